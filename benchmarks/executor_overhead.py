"""Overhead of the Ray executor against the local one (docs/scaling.md). Prints numbers; not a test.

A CPU method that sleeps --delay seconds per pair (then returns the image's centre square) runs on the first
--pairs pairs of the demo set: with the local executor, then with the Ray executor on one worker (the same
work: its overhead is Ray's cost, start-up of the worker, shipping pair ids out and heatmaps back) and on
--workers workers (the speed-up). Overheads are worker-seconds per pair beyond the method's own --delay: the
local run's is the driver's decoding, caching and scoring in series with the method (score_workers=0); a Ray
worker's driver does the same while the worker computes. Ray is started once, before the timed runs, as on a
cluster; each run's wall time still includes starting its workers, also reported alone. Goal: per-pair
overhead under 5 % of a 1-second method.

Usage: python benchmarks/executor_overhead.py [--pairs 24] [--delay 1.0] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from cxrbench.benchmark.ray_executor import RayPool, import_ray
from cxrbench.benchmark.runner import run_benchmark


class Sleeper:
    """Sleeps `delay` seconds per pair; heatmap = the image's centre square."""

    name = "sleeper"

    def __init__(self, delay: float):
        self.delay = delay

    def config(self) -> dict[str, float]:
        return {"delay": self.delay}

    def heatmap(self, image: np.ndarray, prompt: str) -> np.ndarray:
        time.sleep(self.delay)
        side = min(image.shape)
        top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
        return image[top : top + side, left : left + side]


def _timed_run(out: str, pairs: int, delay: float, **kwargs: object) -> tuple[float, bytes]:
    start = time.perf_counter()
    result = run_benchmark(
        Sleeper(delay), "demo", out=out, limit=pairs, n_resamples=100, progress=False, score_workers=0, **kwargs
    )
    return time.perf_counter() - start, (result.run_dir / "scores.csv").read_bytes()


def _worker_start_up(pairs: int, delay: float, workers: int) -> float:
    start = time.perf_counter()
    with RayPool(workers=workers) as pool:
        pool.executor(Sleeper(delay), {}, "demo", {}, pairs, None).close()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--delay", type=float, default=1.0, help="seconds the method takes per pair")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers for the speed-up run")
    args = parser.parse_args()
    ray = import_ray()
    start = time.perf_counter()
    ray.init(num_cpus=max(2, args.workers), include_dashboard=False, logging_level="ERROR")
    print(f"ray {ray.__version__} started in {time.perf_counter() - start:.1f} s (not counted below)")
    print(f"{args.pairs} demo pairs, method sleeps {args.delay:g} s per pair\n")
    with tempfile.TemporaryDirectory() as folder:
        local, reference = _timed_run(f"{folder}/local", args.pairs, args.delay)
        one, one_scores = _timed_run(f"{folder}/ray1", args.pairs, args.delay, executor="ray", workers=1)
        many, many_scores = _timed_run(f"{folder}/rayN", args.pairs, args.delay, executor="ray", workers=args.workers)
        start_up = _worker_start_up(args.pairs, args.delay, 1)
    ray.shutdown()
    ideal = args.pairs * args.delay  # the method alone, on one worker
    print(f"{'run':<20}{'wall s':>9}{'s / pair':>10}{'overhead / pair vs the method alone':>38}")
    for label, wall, workers in (
        ("local", local, 1),
        ("ray, 1 worker", one, 1),
        (f"ray, {args.workers} workers", many, args.workers),
    ):
        extra = (wall - ideal / workers) * workers / args.pairs  # worker-seconds per pair beyond the method's
        print(f"{label:<20}{wall:>9.2f}{wall / args.pairs:>10.3f}{extra * 1000:>28.1f} ms ({extra / args.delay:+.1%})")
    print()
    steady = (one - start_up - ideal) / args.pairs
    print(f"worker start-up (1 worker: process, method and dataset loaded): {start_up:.2f} s")
    print(f"ray, 1 worker, without its start-up: {steady * 1000:+.1f} ms per pair ({steady / args.delay:+.1%})")
    print(f"ray, 1 worker / local wall time: {one / local:.3f}")
    print(f"speed-up with {args.workers} workers: {local / many:.2f} x (ideal {args.workers} x)")
    print(f"scores.csv identical to the local run: {one_scores == reference and many_scores == reference}")


if __name__ == "__main__":
    main()
