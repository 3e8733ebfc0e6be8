"""ldm-zeroshot cost (issue: ldm-zeroshot). Prints numbers; not a test.

1. U-Net forward passes and FLOPs per image for the literal reference schedule and the fast path, counted
   with torch's FlopCounterMode on the full-size architecture (meta tensors, batch 1, 64 x 64 latent):
   reference = 334 steps x 2 contexts of full passes; fast = 179 unconditional full passes + 60 conditional
   passes stopped after the last recorded layer, + 60 more such passes for each extra prompt of an image.
2. Wall time on this machine's CPU for the tiny test model (cxrbench.testing.ldm): reference vs fast, for
   1 and 4 prompts on one image.
3. With a CUDA device: the full-size architecture in bfloat16, images/s and peak memory at batch 1 and 8.

Usage: python benchmarks/ldm_speed.py [--skip-wall]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cxrbench.methods.ldm.attention import DEFAULT_LAYERS, RECORDED_STEPS, cross_attention_layers
from cxrbench.testing.ldm import full_unet, full_unet_pass_flops, random_full_size_models


def flops_report() -> None:
    unet = full_unet().eval()
    flops = full_unet_pass_flops()
    full, truncated = flops[None], flops[cross_attention_layers(unet).index(DEFAULT_LAYERS[-1]) + 1]
    recorded = len(RECORDED_STEPS)
    reference = 334 * 2 * full
    print(
        f"full-size U-Net: {sum(p.numel() for p in unet.parameters()) / 1e6:.1f} M parameters; one pass "
        f"{full / 1e12:.3f} TFLOP, stopped after the last recorded layer {truncated / 1e12:.3f} TFLOP"
    )
    print(f"reference: 668 U-Net passes, {reference / 1e12:.1f} TFLOP per image")
    for prompts in (1, 4):
        fast = 179 * full + prompts * recorded * truncated
        print(
            f"fast, {prompts} prompt(s) per image: {179 + prompts * recorded} passes ({179} full + "
            f"{prompts * recorded} stopped), {fast / 1e12:.1f} TFLOP per image = {fast / prompts / 1e12:.1f} per "
            f"pair; {reference * prompts / fast:.1f}x fewer FLOPs than the reference per pair"
        )


def wall_report() -> None:
    from cxrbench.datasets.demo import DemoDataset
    from cxrbench.methods.ldm.model import load_ldm
    from cxrbench.methods.ldm.pipeline import fast_heatmaps
    from cxrbench.methods.ldm.reference import reference_heatmap
    from cxrbench.testing.ldm import write_tiny_bundle
    from cxrbench.weights import pin

    with tempfile.TemporaryDirectory() as tmp:
        root = write_tiny_bundle(Path(tmp))
        pin(root)
        models = load_ldm(root)
        samples = list(DemoDataset())[:4]
        image, prompts = samples[0].load_image(), [s.prompt for s in samples]
        start = time.perf_counter()
        expected, _ = reference_heatmap(models, image, prompts[0])
        ref_s = time.perf_counter() - start
        for n in (1, 4):
            start = time.perf_counter()
            maps = fast_heatmaps(models, [image] * n, prompts[:n])
            fast_s = time.perf_counter() - start
            print(
                f"tiny model, CPU, {n} prompt(s) on one image: reference {ref_s * n:.1f} s (one pair timed, x{n}), "
                f"fast {fast_s:.1f} s, {ref_s * n / fast_s:.1f}x; max |fast - reference| "
                f"{np.abs(maps[0] - expected).max():.1e}"
            )


def gpu_report() -> None:
    if not torch.cuda.is_available():
        print("no CUDA device: the full-size GPU numbers (images/s, peak memory) were not measured")
        return
    from cxrbench.methods.ldm.pipeline import fast_heatmaps

    models = random_full_size_models("cuda", torch.bfloat16)
    rng = np.random.default_rng(0)
    for batch in (1, 8):
        images = [rng.random((512, 512), dtype=np.float32) for _ in range(batch)]
        fast_heatmaps(models, images[:1], ["left lower atelectasis"])  # warm-up
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        fast_heatmaps(models, images, ["left lower atelectasis"] * batch)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        print(
            f"{torch.cuda.get_device_name()}: full size, bfloat16, batch {batch}: {batch / seconds:.2f} images/s, "
            f"peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-wall", action="store_true", help="only count FLOPs")
    args = parser.parse_args()
    flops_report()
    if not args.skip_wall:
        wall_report()
    gpu_report()


if __name__ == "__main__":
    main()
