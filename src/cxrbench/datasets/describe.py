"""`cxrbench datasets describe`: what a dataset adapter yields, next to the published sizes
(docs/datasets.md)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pandas as pd


def describe_dataset(dataset: Any) -> pd.DataFrame:
    """One row per class: pairs, images, boxes, the published pair count where the dataset has one and, for
    datasets that declare them (`rules`), the rule that made the class's pairs; then a Total row."""
    pairs, images, boxes = Counter(), {}, Counter()
    for sample in dataset:
        pairs[sample.class_name] += 1
        boxes[sample.class_name] += len(sample.boxes)
        images.setdefault(sample.class_name, set()).add(sample.image_id)
    reference = getattr(dataset, "reference_sizes", {})
    rules = getattr(dataset, "rules", None)
    rows = [
        {
            "class": c,
            "pairs": pairs[c],
            "images": len(images.get(c, ())),
            "boxes": boxes[c],
            "reference pairs": reference.get(c, ""),
            **({"rule": rules.get(c, "")} if rules is not None else {}),
        }
        for c in dataset.classes
    ]
    total = {
        "class": "Total",
        "pairs": sum(pairs.values()),
        "images": len(set().union(*images.values())),
        "boxes": sum(boxes.values()),
        "reference pairs": sum(reference.values()) if reference else "",
    }
    if rules is not None:  # the options that chose the rules
        config = dataset.config() if hasattr(dataset, "config") else {}
        total["rule"] = ", ".join(f"{k}={config[k]}" for k in ("classes", "pixels") if k in config)
    rows.append(total)
    return pd.DataFrame(rows)
