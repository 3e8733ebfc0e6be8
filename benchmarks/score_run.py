"""End-to-end time of a full MS-CXR-size run scored from cached heatmaps (issue 19). Prints numbers; not a test.

Writes once into --workdir (default: a temporary folder, removed at the end) an MS-CXR release in its real layout
(`MS_CXR_Local_Alignment_v1.1.0.csv` with `cxrbench.testing.mscxr`'s columns, beside a MIMIC-CXR-JPG `files/`
tree): 1,153 pairs over the 8 classes, each with its own 3056 x 2544 grayscale JPG (about 1.5 MB) and 1-3 boxes.
Then runs `run_benchmark("mscxr", data_root=...)`, what `cxrbench run mscxr` does, with a trivial cacheable method
that returns a 512 x 512 map (the image's centred square, sampled) resized by nearest, as ldm-zeroshot and BioViL
declare. Each run is a fresh Python process, like a new `cxrbench run` (file hashes are remembered per process,
so every image is hashed again, as on a second invocation). For each --score-workers setting (0: scoring in the
run's process; the runner's default pool), a first run computes every heatmap (the cache emptied first) and a
second run finds them all cached. Per run it prints the wall time of the `run_benchmark` call and of the whole
process (start-up and imports included), the CPU time of the process and its scoring workers, and the summary's
timings: total, load (decoding images), method, score (the per-pair scoring seconds summed, wherever they ran).
Goal (issue 19): the cached run under 60 s on 2 cores. --profile runs one more cached run with --score-workers 0
under cProfile and prints where its time goes.

Usage: python benchmarks/score_run.py [--workdir DIR] [--pairs 1153] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import functools
import json
import os
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cxrbench.anatomy.vocabulary import PATHOLOGIES
from cxrbench.benchmark.executors import default_score_workers
from cxrbench.benchmark.runner import run_benchmark
from cxrbench.testing.mscxr import COLUMNS

HEIGHT, WIDTH = 3056, 2544  # MIMIC-CXR
MAP_SIDE = 512
MS_CXR_PAIRS = 1153
CSV_NAME = "MS_CXR_Local_Alignment_v1.1.0.csv"


class NearestMap:
    """A trivial method: the image's centred square sampled on a 512 x 512 grid, resized back by nearest."""

    name = "nearest-512"
    interpolation = "nearest"

    def heatmap(self, image: np.ndarray, prompt: str) -> np.ndarray:
        side = min(image.shape)
        top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
        index = np.arange(MAP_SIDE) * side // MAP_SIDE
        return image[top + index[:, None], left + index]


def _image(rng: np.random.Generator, noise: np.ndarray, index: int) -> np.ndarray:
    """A smooth chest-like gradient plus grain (a shifted copy of a shared noise field), and the pair's index
    written into the first row so that every file differs."""
    y, x = np.ogrid[:HEIGHT, :WIDTH]
    phase = rng.uniform(0, 2 * np.pi, 2)
    base = (
        110
        + 60 * np.sin(x / 300 + phase[0]) * np.cos(y / 400 + phase[1])
        + 30 * np.exp(-((x - WIDTH / 2) ** 2) / 7.2e5)
    )
    pixels = np.clip(base + np.roll(noise, int(rng.integers(noise.size))).reshape(HEIGHT, WIDTH), 0, 255)
    pixels = pixels.astype(np.uint8)
    pixels[0, :32] = [255 * ((index >> bit) & 1) for bit in range(32)]
    return pixels


def _boxes(rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
    """1 box (75 % of pairs), 2 (20 %) or 3 (5 %), x, y, w, h in pixels, 150-1500 pixels a side."""
    boxes = []
    for _ in range(int(rng.choice([1, 2, 3], p=[0.75, 0.2, 0.05]))):
        w, h = (int(v) for v in rng.integers(150, 1500, size=2))
        boxes.append((int(rng.integers(0, WIDTH - w)), int(rng.integers(0, HEIGHT - h)), w, h))
    return boxes


def write_dataset(root: Path, n_pairs: int) -> None:
    """The release under `root`, once: a `done` marker names the pair count it was written for."""
    marker = root / "done"
    if marker.is_file() and marker.read_text() == str(n_pairs):
        print(f"dataset: {n_pairs} pairs already in {root}")
        return
    start = time.perf_counter()
    rng = np.random.default_rng(19)
    noise = rng.normal(0, 2, HEIGHT * WIDTH).astype(np.float32)
    rows = []
    for k in range(n_pairs):
        dicom_id = f"{k:08x}-19191919-{k:08x}-00000000-00000000"
        subject, study = f"1{k:07d}", f"5{k:07d}"
        path = f"files/p{subject[:2]}/p{subject}/s{study}/{dicom_id}.jpg"
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_image(rng, noise, k)).save(root / path, quality=95)
        category = PATHOLOGIES[k % len(PATHOLOGIES)]
        text = f"finding {k}: {category.lower()}"
        rows += [[dicom_id, category, text, path, *box, WIDTH, HEIGHT, "test"] for box in _boxes(rng)]
    with (root / CSV_NAME).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    marker.write_text(str(n_pairs))
    size = sum(f.stat().st_size for f in (root / "files").rglob("*.jpg")) / n_pairs / 1e6
    print(
        f"dataset: wrote {n_pairs} pairs ({len(rows)} boxes, JPGs of {size:.2f} MB on average) to {root} in "
        f"{time.perf_counter() - start:.0f} s"
    )


class DescendantCpu:
    """CPU seconds of this process's descendants (the scoring pool's workers are children of the forkserver, so
    never in this process's RUSAGE_CHILDREN), sampled from /proc every 0.2 s while they run, until stopped."""

    def __init__(self) -> None:
        self.ticks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            for pid in _descendants(os.getpid()):
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
                except OSError:
                    continue  # it ended
                self.ticks[pid] = max(self.ticks.get(pid, 0), int(fields[11]) + int(fields[12]))  # utime + stime

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return sum(self.ticks.values()) / os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> list[int]:
    found = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            pids = [int(p) for p in children.read_text().split()]
        except OSError:
            continue
        for child_pid in pids:
            found += [child_pid, *_descendants(child_pid)]
    return found


def child(root: str, score_workers: int | None, force: bool, profile: bool) -> None:
    """One run in this (fresh) process; prints its wall time and the summary's timings as one JSON line."""
    start = time.perf_counter()
    descendants = DescendantCpu()
    run = functools.partial(
        run_benchmark,
        NearestMap(),
        "mscxr",
        data_root=root,
        out=Path(root) / "runs",
        force=force,
        overwrite=True,
        progress=False,
        score_workers=score_workers,
    )
    if profile:
        profiler = cProfile.Profile()
        result = profiler.runcall(run)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(30)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(20)
    else:
        result = run()
    summary = result.summary
    print(
        json.dumps(
            {
                "run_s": time.perf_counter() - start,
                "timings": summary.timings,
                "n_scored": summary.n_scored,
                "score_workers": summary.settings["score_workers"],
                "pool_cpu_s": descendants.stop(),
            }
        )
    )


def timed_run(root: Path, score_workers: int | None, force: bool, profile: bool = False) -> dict:
    """Run `child` in a new Python process: its JSON, plus the process's wall and CPU seconds (its scoring
    workers' included)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    command = [sys.executable, __file__, "--child", json.dumps([str(root), score_workers, force, profile])]
    out = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode:
        sys.exit(f"run failed:\n{out.stderr}")
    if profile:
        print(out.stderr)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {**result, "process_s": wall, "cpu_s": cpu + result["pool_cpu_s"]}


def report(label: str, result: dict) -> None:
    t = result["timings"]
    print(
        f"  {label:9s} run_benchmark {result['run_s']:6.1f} s wall (process {result['process_s']:6.1f} s, CPU "
        f"{result['cpu_s']:6.1f} s); summary: total {t['total_s']:6.1f} s, load {t['load_s']:6.1f} s, method "
        f"{t['method_s']:5.1f} s, score {t['score_s']:6.1f} s; computed {t['heatmaps_computed']}, from cache "
        f"{t['heatmaps_from_cache']}, scored {result['n_scored']}; {_load()}"
    )


def _load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, help="dataset and runs folder, kept (default: a temporary one)")
    parser.add_argument("--pairs", type=int, default=MS_CXR_PAIRS, help="pairs in the synthetic release")
    parser.add_argument("--profile", action="store_true", help="also profile a cached run (--score-workers 0)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*json.loads(args.child))
        return
    root = args.workdir or Path(tempfile.mkdtemp(prefix="cxrbench-score-run-"))
    try:
        root.mkdir(parents=True, exist_ok=True)
        write_dataset(root, args.pairs)
        print(f"{os.cpu_count()} cores, {_load()}")
        default = default_score_workers(args.pairs)
        for workers, label in ((0, "--score-workers 0"), (None, f"default pool ({default} scoring process(es))")):
            print(f"{label}:")
            report("first", timed_run(root, workers, force=True))
            report("cached", timed_run(root, workers, force=False))
        if args.profile:
            print("profile of a cached run, --score-workers 0:")
            report("profiled", timed_run(root, 0, force=False, profile=True))
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
