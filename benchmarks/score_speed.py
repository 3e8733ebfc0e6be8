"""Scoring speed and memory (issue: core benchmark). Prints numbers; not a test.

1. Time per pair at VinDr size (3000 x 2500 image, 512 x 512 heatmap, 2 boxes) for the protocol plus all
   metrics: the fast path (`score_pair`) against a straightforward reference in the same run (boolean masks
   per metric, scikit-learn's roc_auc_score), with a check that both give the same values.
2. A 10,000-resample bootstrap over 1,000 pairs.
3. Peak resident memory of `run_benchmark` over 100 and 1,000 pairs (each in a fresh process): it streams,
   so it should not grow with the number of pairs.

Usage: python benchmarks/score_speed.py [--pairs 5] [--memory-side 3000]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time

import numpy as np
from sklearn.metrics import roc_auc_score

from cxrbench.benchmark.bootstrap import bootstrap_ci
from cxrbench.benchmark.metrics import IOU_THRESHOLDS, boxes_to_mask, score_pair
from cxrbench.benchmark.protocol import to_image_frame
from cxrbench.types import Box

HEIGHT, WIDTH = 3000, 2500


def reference_scores(frame: np.ndarray, boxes: list[Box]) -> dict[str, float]:
    """The straightforward implementation: one full-frame mask pass per box and per threshold, sklearn AUC."""
    valid = ~np.isnan(frame)
    target = boxes_to_mask(boxes, *frame.shape)
    per_box = []
    for box in boxes:
        inside = boxes_to_mask([box], *frame.shape)
        a, b = frame[inside & valid], frame[~inside & valid]
        denominator = math.sqrt(a.astype(np.float64).var() + b.astype(np.float64).var()) if a.size and b.size else 0
        value = (a.astype(np.float64).mean() - b.astype(np.float64).mean()) / denominator if denominator else 0.0
        per_box.append(value)
    ious = []
    for t in IOU_THRESHOLDS:
        pred = valid & (frame > np.float32(t))
        ious.append(np.logical_and(pred, target).sum() / np.logical_or(pred, target).sum())
    return {
        "cnr": float(np.mean(np.abs(per_box))),
        "miou": float(np.mean(ious)),
        "auc": float(roc_auc_score(target[valid], frame[valid])),
    }


def time_per_pair(n_pairs: int) -> None:
    rng = np.random.default_rng(0)
    fast_s = ref_s = 0.0
    worst = 0.0
    for _ in range(n_pairs):
        heatmap = rng.random((512, 512)).astype(np.float32)
        heatmap[:, :16] = np.nan
        x0, y0 = rng.uniform(0, 1500, size=2)
        boxes = [Box(x0, y0, x0 + 700, y0 + 900), Box(1400, 300, 2450, 1700)]
        start = time.perf_counter()
        fast = score_pair(to_image_frame(heatmap, HEIGHT, WIDTH), boxes)
        fast_s += time.perf_counter() - start
        start = time.perf_counter()
        ref = reference_scores(to_image_frame(heatmap, HEIGHT, WIDTH), boxes)
        ref_s += time.perf_counter() - start
        worst = max(worst, abs(fast.cnr - ref["cnr"]), abs(fast.miou - ref["miou"]), abs(fast.auc - ref["auc"]))
    print(
        f"score per pair ({HEIGHT}x{WIDTH}, {n_pairs} pairs): fast {fast_s / n_pairs:.3f} s, "
        f"reference {ref_s / n_pairs:.3f} s, ratio {ref_s / fast_s:.1f}x, max |difference| {worst:.2e}"
    )


def time_bootstrap() -> None:
    values = np.random.default_rng(1).random(1000)
    bootstrap_ci(values, n_resamples=100)  # warm-up
    start = time.perf_counter()
    bootstrap_ci(values, n_resamples=10_000)
    print(f"bootstrap, 10,000 resamples of 1,000 pairs: {time.perf_counter() - start:.3f} s")


MEMORY_CHILD = """
import json, sys, tempfile
import numpy as np
from cxrbench import Box, ImageSource, Sample
from cxrbench.benchmark.runner import run_benchmark

n, side = int(sys.argv[1]), int(sys.argv[2])

class Synthetic:
    name = "synthetic"
    classes = ("Pneumonia", "Edema")
    def __iter__(self):
        for i in range(n):
            load = lambda i=i: np.random.default_rng(i).random((side, side * 5 // 6), dtype=np.float32)
            yield Sample(f"p{i}", f"i{i}", self.classes[i % 2], "left lower pneumonia",
                         (Box(100, 200, side // 3, side // 2),), side, side * 5 // 6, ImageSource(load, lambda: "x"))

class Downsample:
    name = "downsample"
    cacheable = False
    def heatmap(self, image, prompt):
        return image[::8, ::8][: image.shape[1] // 8, : image.shape[1] // 8]

with tempfile.TemporaryDirectory() as out:
    run_benchmark(Downsample(), Synthetic(), out=out, n_resamples=1000, progress=False)
# VmHWM belongs to this process image; ru_maxrss would carry over the parent's peak through fork + exec.
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"peak_rss_mb": int(hwm.split()[1]) / 1024}))
"""


def peak_memory(side: int) -> None:
    for n in (100, 1000):
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", MEMORY_CHILD, str(n), str(side)], capture_output=True, text=True, check=True
        )
        peak = json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"]
        print(
            f"run_benchmark over {n} pairs of {side}x{side * 5 // 6}: peak RSS {peak:.0f} MB "
            f"({time.perf_counter() - start:.0f} s)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=5, help="pairs timed for the per-pair numbers")
    parser.add_argument("--memory-side", type=int, default=1024, help="image height for the memory runs")
    args = parser.parse_args()
    print(
        f"python {sys.version.split()[0]}, numpy {np.__version__}, "
        f"max RSS of this process so far {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )
    time_per_pair(args.pairs)
    time_bootstrap()
    peak_memory(args.memory_side)


if __name__ == "__main__":
    main()
