"""Scoring speed and memory (issue 19: scoring must never be the bottleneck). Prints numbers; not a test.

1. Time per pair at MIMIC-CXR size (3056 x 2544 image, one 512 x 512 map, 2 boxes) for the frame transform plus
   all metrics, under each scoring protocol (docs/protocol.md), side by side in one run, for a map resized by
   nearest and one resized bilinearly:
   - reference: a straightforward implementation (boolean masks per metric, a NaN working copy per box for the
     published CNR, scikit-learn's roc_auc_score) on the frame of `to_image_frame`;
   - previous full frame: `to_image_frame` + `score_pair` as of commit e030165 (before issue 19 item 2),
     loaded from git (skipped outside a git checkout);
   - full frame: `to_image_frame` + `score_pair` now (docs/protocol.md section 9);
   - previous weighted: `score_square` as of commit 562616e (before its single radix sort), loaded from git;
   - weighted: `score_square` on the map's own grid (nearest maps only, docs/protocol.md section 8);
   - torch (CPU): `to_image_frame` + `torch_scorer.score_frame` on CPU tensors (when torch is installed).
   Each path's per-pair time is the minimum over --repeats rounds (the paths interleaved in each round) of its
   mean over --pairs pairs: wall and CPU milliseconds, the projected time for the 1,153 MS-CXR pairs on one core
   (wall, and CPU: the two differ when other jobs share the cores), its speed relative to the reference and the
   previous scorer (CPU), and the largest difference from the reference.
2. A 10,000-resample bootstrap over 1,000 pairs.
3. Peak resident memory of `run_benchmark` over 100 and 1,000 pairs (each in a fresh process): it streams,
   so it should not grow with the number of pairs.

Usage: python benchmarks/score_speed.py [--pairs 3] [--repeats 3] [--memory-side 1024] [--no-memory]
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
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from cxrbench.benchmark.bootstrap import bootstrap_ci
from cxrbench.benchmark.metrics import BINNED_AUC_THRESHOLDS, IOU_THRESHOLDS, box_slices, boxes_to_mask, score_pair
from cxrbench.benchmark.protocol import PROTOCOLS, to_image_frame
from cxrbench.benchmark.weighted import score_square
from cxrbench.types import Box

HEIGHT, WIDTH = 3056, 2544  # MIMIC-CXR
MS_CXR_PAIRS = 1153
PREVIOUS = "e030165"  # the full-frame scorer before issue 19 item 2
PREVIOUS_WEIGHTED = "562616e"  # the weighted scorer before its single radix sort
ROOT = Path(__file__).resolve().parents[1]


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


def _git_module(commit: str, name: str, renames: dict[str, str] | None = None) -> types.ModuleType | None:
    """src/cxrbench/benchmark/<name>.py as of `commit`, loaded from git as module `previous_<commit>_<name>`
    (its imports of `renames`' keys go to their values); None outside a git checkout."""
    try:
        source = subprocess.run(
            ["git", "show", f"{commit}:src/cxrbench/benchmark/{name}.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    for old, new in (renames or {}).items():
        source = source.replace(f"from {old} import", f"from {new} import")
    module = types.ModuleType(f"previous_{commit}_{name}")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{commit}:{name}.py", "exec"), module.__dict__)
    return module


def previous_scorer() -> Callable | None:
    """`to_image_frame` + `score_pair` as of commit PREVIOUS, loaded from git; None outside a git checkout."""
    protocol, metrics = _git_module(PREVIOUS, "protocol"), _git_module(PREVIOUS, "metrics")
    if protocol is None or metrics is None:
        return None
    return lambda heatmap, boxes, interpolation, protocol_name: metrics.score_pair(
        protocol.to_image_frame(heatmap, HEIGHT, WIDTH, interpolation, protocol_name), boxes, protocol=protocol_name
    )


def previous_weighted() -> Callable | None:
    """`score_square` as of commit PREVIOUS_WEIGHTED (with that commit's metrics), loaded from git."""
    metrics = _git_module(PREVIOUS_WEIGHTED, "metrics")
    if metrics is None:
        return None
    weighted = _git_module(PREVIOUS_WEIGHTED, "weighted", {"cxrbench.benchmark.metrics": metrics.__name__})
    return lambda heatmap, boxes, interpolation, protocol: weighted.score_square(
        heatmap, HEIGHT, WIDTH, boxes, interpolation, protocol=protocol
    )


def torch_scorer() -> Callable | None:
    """`to_image_frame` + the torch scorer on the CPU; None without torch."""
    try:
        import torch

        from cxrbench.benchmark.torch_scorer import score_frame
    except ImportError:
        return None
    torch.set_num_threads(1)  # one core per pair, as the other paths
    return lambda heatmap, boxes, interpolation, protocol: score_frame(
        to_image_frame(heatmap, HEIGHT, WIDTH, interpolation, protocol), boxes, protocol=protocol, device="cpu"
    )


def scoring_paths(interpolation: str) -> dict[str, Callable]:
    paths = {
        "reference": lambda heatmap, boxes, interpolation, protocol: reference_scores(
            to_image_frame(heatmap, HEIGHT, WIDTH, interpolation, protocol), boxes, protocol
        ),
        "previous full frame": previous_scorer(),
        "full frame": lambda heatmap, boxes, interpolation, protocol: score_pair(
            to_image_frame(heatmap, HEIGHT, WIDTH, interpolation, protocol), boxes, protocol=protocol
        ),
        "previous weighted": previous_weighted(),
        "weighted": lambda heatmap, boxes, interpolation, protocol: score_square(
            heatmap, HEIGHT, WIDTH, boxes, interpolation, protocol=protocol
        ),
        "torch (CPU)": torch_scorer(),
    }
    if interpolation != "nearest":  # score_square would build the frame: the full-frame path
        del paths["previous weighted"], paths["weighted"]
    missing = [name for name, path in paths.items() if path is None]
    if missing:
        print(f"  (not timed: {', '.join(missing)}: no git checkout or no torch)")
    return {name: path for name, path in paths.items() if path is not None}


def _pairs(n_pairs: int) -> list[tuple[np.ndarray, list[Box]]]:
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(n_pairs):
        heatmap = rng.random((512, 512)).astype(np.float32)
        heatmap[:, :16] = np.nan
        x0, y0 = rng.uniform(0, 1500, size=2)
        pairs.append((heatmap, [Box(x0, y0, x0 + 700, y0 + 900), Box(1400, 300, 2450, 1700)]))
    return pairs


def time_per_pair(n_pairs: int, repeats: int, interpolation: str, protocol: str) -> None:
    print(f"protocol {protocol}: {HEIGHT}x{WIDTH} image, 512x512 {interpolation} map, 2 boxes, {n_pairs} pairs")
    paths, pairs = scoring_paths(interpolation), _pairs(n_pairs)
    wall, cpu = dict.fromkeys(paths, math.inf), dict.fromkeys(paths, math.inf)
    worst = dict.fromkeys(paths, 0.0)
    for _ in range(repeats):
        for name, path in paths.items():
            start, start_cpu, results = time.perf_counter(), time.process_time(), []
            for heatmap, boxes in pairs:
                results.append(path(heatmap, boxes, interpolation, protocol))
            wall[name] = min(wall[name], (time.perf_counter() - start) / n_pairs)
            cpu[name] = min(cpu[name], (time.process_time() - start_cpu) / n_pairs)
            if name == "reference":
                reference = results
                continue
            for got, expected in zip(results, reference, strict=True):
                diffs = (abs(getattr(got, key) - value) for key, value in expected.items())
                worst[name] = max(worst[name], *diffs)
    for name in paths:
        baselines = [o for o in ("reference", "previous full frame") if o in paths and name not in (o, "reference")]
        baselines += ["previous weighted"] if name == "weighted" and "previous weighted" in paths else []
        speed = "".join(f", {cpu[other] / cpu[name]:.1f}x the {other}" for other in baselines)
        check = "" if name == "reference" else f"; max |difference| {worst[name]:.1e}"
        print(
            f"  {name:20s} {wall[name] * 1e3:7.1f} ms/pair wall, {cpu[name] * 1e3:7.1f} ms CPU{speed}; "
            f"{MS_CXR_PAIRS} pairs: {wall[name] * MS_CXR_PAIRS:.0f} s wall, {cpu[name] * MS_CXR_PAIRS:.0f} s CPU{check}"
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
    parser.add_argument("--pairs", type=int, default=3, help="pairs timed for the per-pair numbers")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; each path's time is its fastest round")
    parser.add_argument("--memory-side", type=int, default=1024, help="image height for the memory runs")
    parser.add_argument("--no-memory", action="store_true", help="skip the bootstrap and memory runs")
    args = parser.parse_args()
    print(
        f"python {sys.version.split()[0]}, numpy {np.__version__}, "
        f"max RSS of this process so far {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )
    for interpolation, protocol in itertools.product(("nearest", "bilinear"), PROTOCOLS):
        time_per_pair(args.pairs, args.repeats, interpolation, protocol)
    if not args.no_memory:
        time_bootstrap()
        peak_memory(args.memory_side)


if __name__ == "__main__":
    main()
