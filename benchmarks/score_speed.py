"""Scoring speed and memory (issue: core benchmark). Prints numbers; not a test.

1. Time per pair at MIMIC-CXR size (3056 x 2544 image, 512 x 512 map resized by nearest, 2 boxes) for the frame
   transform plus all metrics, under each scoring protocol (docs/protocol.md), side by side in one run: a
   straightforward reference (boolean masks per metric, a NaN working copy per box for the published CNR,
   scikit-learn's roc_auc_score), the full-frame scorer (`to_image_frame` + `score_pair`) and the weighted path
   on the map's own grid (`score_square`, docs/protocol.md section 8); wall and CPU seconds, ratios, the projected
   time for the 1,153 MS-CXR pairs on one core, and the largest difference from the reference.
2. A 10,000-resample bootstrap over 1,000 pairs.
3. Peak resident memory of `run_benchmark` over 100 and 1,000 pairs (each in a fresh process): it streams,
   so it should not grow with the number of pairs.

Usage: python benchmarks/score_speed.py [--pairs 5] [--memory-side 3000]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import resource
import subprocess
import sys
import time

import numpy as np
from sklearn.metrics import roc_auc_score

from cxrbench.benchmark.bootstrap import bootstrap_ci
from cxrbench.benchmark.metrics import BINNED_AUC_THRESHOLDS, IOU_THRESHOLDS, box_slices, boxes_to_mask, score_pair
from cxrbench.benchmark.protocol import PROTOCOLS, to_image_frame
from cxrbench.benchmark.weighted import score_square
from cxrbench.types import Box

HEIGHT, WIDTH = 3056, 2544  # MIMIC-CXR
MS_CXR_PAIRS = 1153


def _contrast(inside: np.ndarray, outside: np.ndarray) -> float:
    inside, outside = inside[~np.isnan(inside)].astype(np.float64), outside[~np.isnan(outside)].astype(np.float64)
    denominator = math.sqrt(inside.var() + outside.var()) if inside.size and outside.size else 0.0
    return float(inside.mean() - outside.mean()) / denominator if denominator else 0.0


def reference_box_cnrs(frame: np.ndarray, boxes: list[Box], protocol: str) -> list[float]:
    """One full-frame pass per box: cxrbench compares each box with every other pixel; published scores the
    boxes in order on a working copy, setting each scored box to NaN."""
    if protocol == "cxrbench":
        masks = [boxes_to_mask([box], *frame.shape) for box in boxes]
        return [_contrast(frame[inside], frame[~inside]) for inside in masks]
    work, out = frame.copy(), []
    for box in boxes:
        region = box_slices(box, *frame.shape, protocol="published")
        inside = work[region].copy()
        work[region] = np.nan
        out.append(_contrast(inside, work))
    return out


def reference_scores(frame: np.ndarray, boxes: list[Box], protocol: str) -> dict[str, float]:
    """The straightforward implementation: full-frame masks per box and per threshold, sklearn AUC."""
    valid = ~np.isnan(frame)
    target = boxes_to_mask(boxes, *frame.shape, protocol=protocol)
    ious = []
    for t in IOU_THRESHOLDS:
        pred = valid & (frame > np.float32(t))
        ious.append(np.logical_and(pred, target).sum() / np.logical_or(pred, target).sum())
    points = [(0, 0)]
    for t in BINNED_AUC_THRESHOLDS[::-1]:
        pred = valid & (frame >= np.float32(t))
        points.append((int((pred & ~target).sum()), int((pred & target).sum())))
    twice_area = sum((x1 - x0) * (y0 + y1) for (x0, y0), (x1, y1) in itertools.pairwise(points))
    return {
        "cnr": float(np.mean(np.abs(reference_box_cnrs(frame, boxes, protocol)))),
        "miou": float(np.mean(ious)),
        "auc": float(roc_auc_score(target[valid], frame[valid])),
        "auc_binned": float(np.float32(twice_area)) / 2 / (points[-1][0] * points[-1][1]),
    }


def time_per_pair(n_pairs: int, protocol: str) -> None:
    rng = np.random.default_rng(0)
    paths = {
        "reference": lambda heatmap, boxes: reference_scores(
            to_image_frame(heatmap, HEIGHT, WIDTH, "nearest", protocol), boxes, protocol
        ),
        "full frame": lambda heatmap, boxes: score_pair(
            to_image_frame(heatmap, HEIGHT, WIDTH, "nearest", protocol), boxes, protocol=protocol
        ),
        "weighted": lambda heatmap, boxes: score_square(heatmap, HEIGHT, WIDTH, boxes, "nearest", protocol=protocol),
    }
    wall, cpu, worst = dict.fromkeys(paths, 0.0), dict.fromkeys(paths, 0.0), dict.fromkeys(paths, 0.0)
    for _ in range(n_pairs):
        heatmap = rng.random((512, 512)).astype(np.float32)
        heatmap[:, :16] = np.nan
        x0, y0 = rng.uniform(0, 1500, size=2)
        boxes = [Box(x0, y0, x0 + 700, y0 + 900), Box(1400, 300, 2450, 1700)]
        results = {}
        for name, path in paths.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            results[name] = path(heatmap, boxes)
            wall[name] += time.perf_counter() - start
            cpu[name] += time.process_time() - start_cpu
        for name in ("full frame", "weighted"):
            diffs = (abs(getattr(results[name], key) - value) for key, value in results["reference"].items())
            worst[name] = max(worst[name], *diffs)
    print(f"protocol {protocol}: {HEIGHT}x{WIDTH} image, 512x512 nearest map, 2 boxes, {n_pairs} pairs")
    for name in paths:
        ratio = "" if name == "reference" else f", {wall['reference'] / wall[name]:6.1f}x faster than the reference"
        if name == "weighted":
            ratio += f", {wall['full frame'] / wall[name]:.1f}x faster than the full frame"
        check = "" if name == "reference" else f", max |difference| {worst[name]:.1e}"
        print(
            f"  {name:10s} {wall[name] / n_pairs * 1e3:7.1f} ms/pair wall, {cpu[name] / n_pairs * 1e3:7.1f} ms CPU; "
            f"{MS_CXR_PAIRS} pairs: {wall[name] / n_pairs * MS_CXR_PAIRS:6.1f} s{ratio}{check}"
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
    for protocol in PROTOCOLS:
        time_per_pair(args.pairs, protocol)
    time_bootstrap()
    peak_memory(args.memory_side)


if __name__ == "__main__":
    main()
