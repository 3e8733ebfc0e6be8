"""What a sweep saves by sharing work between configurations (docs/ldm.md section 6). Prints numbers; not a test.

Runs an 8-configuration ldm-zeroshot sweep (layers 3,4,6,7 / 3-8 x tokens all / pathology x Otsu on / off) on the
demo set with the tiny test bundle twice: as one `run_sweep` (configurations share trajectories and unthresholded
maps) and as 8 independent runs (each in its own output folder, sharing nothing). Every U-Net call is recorded
(batch size, and how many cross-attention layers it ran before it stopped) and priced with the full-size U-Net's
FLOPs for that much of a pass, counted by torch's FlopCounterMode on the real architecture (meta tensors: shapes
only). Prints per configuration the U-Net calls and TFLOPs of both, the ratio (goal: the sweep at most 1/4 of the
independent runs) and whether every heatmap and scores.csv is identical.

Usage: python benchmarks/sweep_flops.py [--pairs 4]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from cxrbench.benchmark.runner import run_benchmark
from cxrbench.benchmark.store import cache_dir
from cxrbench.benchmark.sweep import cartesian, run_sweep
from cxrbench.testing.ldm import full_unet_pass_flops, write_tiny_bundle
from cxrbench.weights import pin

GRID = {"layers": ["3,4,6,7", "3-8"], "tokens": ["all", "pathology"], "otsu": ["true", "false"]}
METHOD = "ldm-zeroshot"


class UnetCalls:
    """Every U-Net call made inside the block: (batch size, cross-attention layers run, whether it finished)."""

    def __init__(self) -> None:
        self.calls: list[list] = []
        self._attention: set[int] = set()

    def _pre(self, module, args, kwargs=None):
        if type(module).__name__ == "DiffusionModelUNet":
            self._attention = {id(m) for n, m in module.named_modules() if n.endswith(".attn2")}
            self.calls.append([args[0].shape[0], 0, False])

    def _post(self, module, args, output):
        if id(module) in self._attention:
            self.calls[-1][1] += 1
        elif type(module).__name__ == "DiffusionModelUNet":
            self.calls[-1][2] = True

    def __enter__(self) -> UnetCalls:
        hooks = torch.nn.modules.module
        pre, post = hooks.register_module_forward_pre_hook(self._pre), hooks.register_module_forward_hook(self._post)
        self._handles = [pre, post]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()

    def flops(self, prices: dict[int | None, int]) -> int:
        return sum(batch * prices[None if finished else layers] for batch, layers, finished in self.calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=4, help="demo pairs (one image each)")
    args = parser.parse_args()
    prices = full_unet_pass_flops()
    print(
        f"full-size U-Net, batch 1: whole pass {prices[None] / 1e12:.3f} TFLOP; stopped after cross-attention layer "
        + ", ".join(f"{k}: {prices[k] / 1e12:.3f}" for k in range(1, 12))
    )
    configurations = cartesian(METHOD, GRID)
    common = {"limit": args.pairs, "n_resamples": 100, "progress": False, "on_error": "skip", "score_workers": 0}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        weights = write_tiny_bundle(root / "weights")
        pin(weights)
        fixed = {"weights": str(weights)}
        independent = []
        for i, configuration in enumerate(configurations):
            with UnetCalls() as calls:
                run_benchmark(
                    METHOD,
                    "demo",
                    out=root / f"independent-{i}",
                    name=configuration.name,
                    method_options={**fixed, **configuration.options},
                    **common,
                )
            independent.append(calls)
        shared_out = root / "sweep"
        shared = []
        for configuration in configurations:  # run_sweep one configuration at a time, to count each one's calls
            with UnetCalls() as calls:
                run_sweep(METHOD, "demo", [configuration], fixed_options=fixed, out=shared_out, **common)
            shared.append(calls)
        print(f"\n{args.pairs} demo pairs, one image each; ldm-zeroshot, T = 300, window 120-180")
        print(f"{'configuration':58} {'calls indep.':>12} {'sweep':>6} {'TFLOP indep.':>13} {'sweep':>8}")
        for configuration, alone, together in zip(configurations, independent, shared, strict=True):
            print(
                f"{configuration.name:58} {len(alone.calls):12d} {len(together.calls):6d} "
                f"{alone.flops(prices) / 1e12:13.1f} {together.flops(prices) / 1e12:8.1f}"
            )
        total_alone = sum(c.flops(prices) for c in independent)
        total_shared = sum(c.flops(prices) for c in shared)
        print(
            f"total: independent runs {total_alone / 1e12:.1f} TFLOP, sweep {total_shared / 1e12:.1f} TFLOP: "
            f"{total_shared / total_alone:.3f} of the independent cost (goal <= 0.25)"
        )
        same_scores = all(
            (root / f"independent-{i}" / "demo" / c.name / "scores.csv").read_bytes()
            == (shared_out / "demo" / c.name / "scores.csv").read_bytes()
            for i, c in enumerate(configurations)
        )
        swept = {p.name: p.read_bytes() for p in cache_dir(shared_out, "demo", METHOD).glob("*.npy")}
        alone_maps = {
            p.name: p.read_bytes()
            for i in range(len(configurations))
            for p in cache_dir(root / f"independent-{i}", "demo", METHOD).glob("*.npy")
        }
        print(
            f"identical to the independent runs: scores.csv {same_scores}; heatmap cache files "
            f"{swept == alone_maps} ({len(swept)} heatmaps)"
        )


if __name__ == "__main__":
    main()
