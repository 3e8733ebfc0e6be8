"""The dagger of `cxrbench table --marks` (docs/results.md, "Tables"): per (class, metric), whether the best
method is significantly better than the second best, by the paired bootstrap of cxrbench/benchmark/compare.py on
the two runs' stored scores.csv (the pairs both scored, fixed seed).

A cell gets the dagger when its best is one method and, against each second-best method, the mean difference is
positive with p < ALPHA: for a class row the Holm-adjusted p-value (across the classes of that comparison and
metric), for the Average row its own p-value (it is not part of the Holm family). Ties for best get no dagger.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from cxrbench.benchmark.aggregate import AVERAGE
from cxrbench.benchmark.compare import paired_bootstrap
from cxrbench.benchmark.summary import RunSummary
from cxrbench.leaderboard.tables import Leaderboard, Marks

ALPHA = 0.05
N_RESAMPLES = 10_000
SEED = 0


def significant_cells(
    board: Leaderboard, runs: Sequence[RunSummary], n_resamples: int = N_RESAMPLES, seed: int = SEED
) -> frozenset[tuple[str, str]]:
    """The (class, metric) cells whose best is significantly better than every second best (see above)."""
    by_name = {r.name: r for r in runs if r.dataset == board.dataset}
    wanted: dict[tuple[str, str], list[tuple[str, str]]] = {}  # (best, second) -> cells
    for cls in board.classes:
        for metric in board.metrics:
            best, second = board.rank(cls, metric)
            if len(best) == 1:
                for other in sorted(second):
                    wanted.setdefault((next(iter(best)), other), []).append((cls, metric))
    verdicts: dict[tuple[str, str], list[bool]] = {}
    for (best, other), cells in wanted.items():
        metrics = [k for k in board.metrics if any(k == m for _, m in cells)]
        rows = paired_bootstrap([by_name[other], by_name[best]], other, metrics, n_resamples, seed).rows
        rows = rows[rows["method"] == best].set_index(["class", "metric"])
        for cls, metric in cells:
            if (cls, metric) not in rows.index:  # no pair of this class scored by both
                verdicts.setdefault((cls, metric), []).append(False)
                continue
            row = rows.loc[(cls, metric)]
            p = row["p"] if cls == AVERAGE else row["p_holm"]
            verdicts.setdefault((cls, metric), []).append(bool(row["diff"] > 0 and p < ALPHA))
    return frozenset(cell for cell, found in verdicts.items() if all(found))


def table_marks(
    board: Leaderboard, runs: Sequence[RunSummary], n_resamples: int = N_RESAMPLES, seed: int = SEED
) -> Marks:
    """Best / second best marks with the daggers; without daggers (and a warning) for runs on different
    versions of the dataset (--allow-mixed), which cannot be paired."""
    if board.manifests:
        warnings.warn(
            "no significance daggers: the runs were scored on different versions of the dataset", stacklevel=2
        )
        return Marks()
    test = (
        f"paired bootstrap on the pairs both scored, {n_resamples} resamples, seed {seed}, p < {ALPHA}; "
        f"Holm-adjusted across the classes, the Average unadjusted"
    )
    return Marks(significant_cells(board, runs, n_resamples, seed), test)
