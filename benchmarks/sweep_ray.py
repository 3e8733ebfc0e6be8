"""A sweep on Ray against its configurations run one by one on Ray (docs/scaling.md, "Sweeps on Ray"). Prints
numbers; not a test.

A CPU method that sleeps --delay seconds per pair (batches of --batch pairs) runs --configurations
configurations on the first --pairs demo pairs, on --workers Ray workers: once as separate `run_benchmark` calls
(each starts its own workers and waits for its slowest batch before the next configuration begins), once as one
`run_sweep` (one set of workers; the next configuration fills the workers the previous one no longer needs).
Ideal: configurations x pairs x delay / workers. Both give the same scores.csv files (checked).

Usage: python benchmarks/sweep_ray.py [--configurations 4] [--pairs 9] [--batch 3] [--delay 0.5] [--workers 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from cxrbench.benchmark.ray_executor import import_ray
from cxrbench.benchmark.runner import run_benchmark
from cxrbench.benchmark.sweep import cartesian, run_sweep

# The method, as a plugin package the Ray workers find through its entry point (as a user's method would be
# installed on every node).
PLUGIN = """
import time


class Sleeper:
    name = "sweep-sleeper"

    def __init__(self, delay: float = 0.5, batch: int = 3, tag: int = 0):
        self.delay, self.batch_size, self.tag = float(delay), int(batch), int(tag)

    def config(self):
        return {"delay": self.delay, "tag": self.tag}

    def heatmaps(self, images, prompts):
        time.sleep(self.delay * len(images))
        return [image[: min(image.shape), : min(image.shape)] for image in images]
"""


def _install_plugin(folder: Path) -> None:
    (folder / "cxrbench_sweep_bench.py").write_text(PLUGIN)
    info = folder / "cxrbench_sweep_bench-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cxrbench-sweep-bench\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[cxrbench.methods]\nsweep-sleeper = cxrbench_sweep_bench:Sleeper\n")
    sys.path.insert(0, str(folder))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configurations", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=9)
    parser.add_argument("--batch", type=int, default=3)
    parser.add_argument("--delay", type=float, default=0.5, help="seconds the method takes per pair")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    ray = import_ray()
    method = "sweep-sleeper"
    fixed = {"delay": str(args.delay), "batch": str(args.batch)}
    configurations = cartesian(method, {"tag": [str(i) for i in range(args.configurations)]})
    common = {"limit": args.pairs, "n_resamples": 100, "progress": False, "score_workers": 0, "executor": "ray"}
    with tempfile.TemporaryDirectory() as folder:
        _install_plugin(Path(folder))
        env = {"PYTHONPATH": folder}
        ray.init(num_cpus=args.workers, include_dashboard=False, logging_level="ERROR", runtime_env={"env_vars": env})
        start = time.perf_counter()
        for c in configurations:
            run_benchmark(
                method,
                "demo",
                out=f"{folder}/one",
                name=c.name,
                method_options={**fixed, **c.options},
                workers=args.workers,
                **common,
            )
        one_by_one = time.perf_counter() - start
        start = time.perf_counter()
        run_sweep(method, "demo", configurations, fixed_options=fixed, out=f"{folder}/sweep", **common)
        swept = time.perf_counter() - start
        for c in configurations:
            a, b = (Path(folder, kind, "demo", c.name, "scores.csv").read_bytes() for kind in ("one", "sweep"))
            assert a == b, f"{c.name}: the sweep's scores differ"
        ray.shutdown()
    ideal = args.configurations * args.pairs * args.delay / args.workers
    print(f"{args.configurations} configurations x {args.pairs} pairs x {args.delay:g} s, batches of {args.batch}, ")
    print(f"{args.workers} Ray workers; ideal {ideal:.1f} s; scores.csv identical both ways")
    print(f"{'':<26}{'wall s':>8}{'/ ideal':>9}")
    print(f"{'one run per configuration':<26}{one_by_one:>8.1f}{one_by_one / ideal:>9.2f}")
    print(f"{'one sweep':<26}{swept:>8.1f}{swept / ideal:>9.2f}")
    print(f"sweep / one by one: {swept / one_by_one:.2f}")


if __name__ == "__main__":
    main()
