"""ldm-tuned training cost (issue: ldm-tuned). Prints numbers; not a test.

For the full-size architecture (random weights; SD-2.1's real tokenizer, a 1-layer 1024-wide text encoder):
1. FLOPs of one training step per visited timestep (forward to the last recorded layer + backward), counted
   with torch's FlopCounterMode, with and without activation checkpointing.
2. CPU, float32: wall time of one step visiting --cpu-timesteps timesteps, one pass (no checkpointing) vs
   chunks of 1 timestep under activation checkpointing, peak RSS of each (a fresh process per setting);
   projected to the 30 timesteps of a real step and to one epoch of 6,480 samples.
3. With a CUDA device: bfloat16, the 30 timesteps, chunk sizes 30 / 10 / 5: seconds per step, peak memory,
   projected epoch (6,480 steps) against the goal of a full run in under 1 h and 20 GB on one H100.

Usage: python benchmarks/tune_speed.py [--cpu-timesteps N] [--epochs E]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from cxrbench.anatomy.lut import load_lut
from cxrbench.methods.ldm.attention import TUNING_LAYERS, TUNING_TIMESTEPS, TimestepMaps
from cxrbench.methods.ldm.codebook import Codebook
from cxrbench.methods.ldm.tuning import (
    TuneConfig,
    encode_prompt,
    noise_for_step,
    training_losses,
)
from cxrbench.testing.ldm import random_full_size_models

SAMPLES = 6480
PROMPT = "left lower <and> right lower atelectasis"


class Step:
    """One sample's training step on random full-size models, repeatable."""

    def __init__(self, device: str, dtype: torch.dtype, timesteps: int, chunk: int):
        from cxrbench.methods.ldm.pipeline import encode_images

        self.models = random_full_size_models(device, dtype)
        self.book = Codebook.from_text_encoder(self.models.tokenizer, self.models.text_encoder).to(device)
        self.optimizer = torch.optim.Adam([self.book.location], lr=1e-3)
        special = {r.token_id for r in self.book.rows if r.kind == "special"}
        self.prompt = encode_prompt(self.models.tokenizer, PROMPT, special)
        image = np.random.default_rng(0).random((512, 512), dtype=np.float32)
        self.latent = encode_images(self.models, [image])[0]
        table = load_lut()
        self.gaussians = [table.gaussians["left lower"], table.gaussians["right lower"]]
        self.timesteps = TUNING_TIMESTEPS[:timesteps]
        self.config = TuneConfig(timestep_chunk=chunk)
        self.maps = TimestepMaps(self.models.unet, TUNING_LAYERS)

    def __call__(self, step: int = 0) -> None:
        noise = noise_for_step(0, step, (len(self.timesteps), *self.latent.shape)).to(self.models.device)
        with self.maps:
            losses = training_losses(
                self.models,
                self.book,
                self.maps,
                self.latent,
                self.prompt,
                self.gaussians,
                noise,
                self.config,
                self.timesteps,
            )
            self.optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
        self.optimizer.step()


def flops_report() -> None:
    for chunk, label in ((2, "one pass"), (1, "activation checkpointing")):
        step = Step("cpu", torch.float32, 2, chunk)
        with FlopCounterMode(display=False) as counter:
            step()
        per_t = counter.get_total_flops() / 2
        print(
            f"full size, {label}: {per_t / 1e12:.3f} TFLOP per visited timestep (forward + backward), "
            f"{30 * per_t / 1e12:.1f} TFLOP per step of 30 timesteps, {SAMPLES * 30 * per_t / 1e15:.0f} PFLOP "
            "per epoch"
        )


def resident_gib(field: str = "VmRSS") -> float:
    """This process's resident memory now (VmRSS) or its peak since the last reset (VmHWM), Linux."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1]) / 2**20  # kB -> GiB


def measure(device: str, dtype: str, timesteps: int, chunk: int, repeats: int) -> dict[str, float]:
    """Seconds per step (after one warm-up step), peak memory and the memory held before the first step (models,
    latent), in GiB, for this process."""
    step = Step(device, getattr(torch, dtype), timesteps, chunk)
    if device.startswith("cuda"):
        before = torch.cuda.memory_allocated() / 2**30
    else:
        with open("/proc/self/clear_refs", "w") as refs:  # reset the peak: the image encoding is not a step
            refs.write("5")
        before = resident_gib()
    step(0)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for i in range(repeats):
        step(i + 1)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resident_gib("VmHWM")
    return {"seconds": (time.perf_counter() - start) / repeats, "peak_gib": peak, "before_gib": before}


def in_fresh_process(*args: object) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--measure", *map(str, args)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def cpu_report(timesteps: int, epochs: int) -> None:
    for chunk, label in ((timesteps, "one pass"), (1, "checkpointed chunks of 1")):
        r = in_fresh_process("cpu", "float32", timesteps, chunk, 1)
        step_30 = r["seconds"] * 30 / timesteps
        print(
            f"CPU ({torch.get_num_threads()} threads), float32, {label}: {r['seconds']:.1f} s per step of {timesteps} "
            f"timesteps, peak RSS {r['peak_gib']:.2f} GiB ({r['before_gib']:.2f} before the first step); "
            f"projected {step_30:.0f} s per 30-timestep step, "
            f"{step_30 * SAMPLES * epochs / 3600:.0f} h for {epochs} epoch(s) of {SAMPLES} samples"
        )


def gpu_report(epochs: int) -> None:
    if not torch.cuda.is_available():
        print("no CUDA device: the GPU numbers (s/step, peak memory, projected run) were not measured")
        return
    for chunk in (30, 10, 5):
        r = in_fresh_process("cuda", "bfloat16", 30, chunk, 5)
        hours = r["seconds"] * SAMPLES * epochs / 3600
        print(
            f"{torch.cuda.get_device_name()}, bfloat16, 30 timesteps in chunks of {chunk}: {r['seconds']:.2f} s per "
            f"step, peak {r['peak_gib']:.1f} GiB ({r['before_gib']:.1f} before the first step); "
            f"{epochs} epoch(s) of {SAMPLES} samples: {hours:.2f} h "
            f"(goal < 1 h and < 20 GiB; published reference 3 h on one 24 GB GPU)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu-timesteps", type=int, default=6, help="timesteps per CPU step (projected to 30)")
    parser.add_argument("--epochs", type=int, default=TuneConfig().epochs, help="epochs in the projection")
    parser.add_argument("--skip-cpu", action="store_true", help="only FLOPs and GPU")
    parser.add_argument("--measure", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        device, dtype, timesteps, chunk, repeats = args.measure
        print(json.dumps(measure(device, dtype, int(timesteps), int(chunk), int(repeats))))
        return
    flops_report()
    if not args.skip_cpu:
        cpu_report(args.cpu_timesteps, args.epochs)
    gpu_report(args.epochs)


if __name__ == "__main__":
    main()
