"""`cxrbench prompts`: reports in, one "{location} {pathology}" prompt per (report, pathology) out."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cxrbench.anatomy.extract import Extractor, report_findings
from cxrbench.anatomy.vocabulary import PATHOLOGIES
from cxrbench.datasets.tables import read_table, where
from cxrbench.errors import DataError

OUTPUT_COLUMNS = ("id", "pathology", "sentence", "locations", "prompt")
_BY_LOWER = {p.lower(): p for p in PATHOLOGIES}


def prompts_from_reports(path: Path, extractor: Extractor = "rules", weights: str | Path | None = None) -> pd.DataFrame:
    """Rows id, pathology, sentence (the locating sentences, space-joined), locations (";"-joined), prompt.

    The input has columns `id`, `text` and optionally `pathology` (one of the 8, any case): then only that
    pathology is searched in that row's text; otherwise all 8 are. Findings without a location give no row.
    """
    frame = read_table(path, ("id", "text"), "reports file")
    rows = []
    for row in frame.to_dict("records"):
        if "pathology" in frame.columns and row["pathology"].strip():
            name = _BY_LOWER.get(row["pathology"].strip().lower())
            if name is None:
                raise DataError(
                    f"{where(path, row['_line'])}: unknown pathology {row['pathology']!r}; "
                    f"use one of {', '.join(PATHOLOGIES)}"
                )
            pathologies = [name]
        else:
            pathologies = list(PATHOLOGIES)
        for finding in report_findings(row["text"], pathologies, extractor, weights):
            rows.append(
                {
                    "id": row["id"],
                    "pathology": finding.pathology,
                    "sentence": " ".join(finding.sentences),
                    "locations": ";".join(finding.locations),
                    "prompt": finding.prompt,
                }
            )
    return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))
