"""`cxrbench datasets describe`: what a dataset adapter yields, next to the published sizes."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pandas as pd


def describe_dataset(dataset: Any) -> pd.DataFrame:
    """One row per class: pairs, images, boxes, and the reference pair count where SPEC 3 gives one."""
    pairs, images, boxes = Counter(), {}, Counter()
    for sample in dataset:
        pairs[sample.class_name] += 1
        boxes[sample.class_name] += len(sample.boxes)
        images.setdefault(sample.class_name, set()).add(sample.image_id)
    reference = getattr(dataset, "reference_sizes", {})
    rows = [
        {
            "class": c,
            "pairs": pairs[c],
            "images": len(images.get(c, ())),
            "boxes": boxes[c],
            "reference pairs": reference.get(c, ""),
        }
        for c in dataset.classes
    ]
    rows.append(
        {
            "class": "Total",
            "pairs": sum(pairs.values()),
            "images": len(set().union(*images.values())),
            "boxes": sum(boxes.values()),
            "reference pairs": sum(reference.values()) if reference else "",
        }
    )
    return pd.DataFrame(rows)
