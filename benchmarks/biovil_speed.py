"""biovil / biovil-t inference speed (issue: biovil baselines). Prints numbers; not a test.

The image models are the real architectures (hi-ml-multimodal's ResNet-50 ImageModels, random weights); the
text model is a tiny CXR-BERT (each distinct prompt is embedded once, so it does not matter for throughput).
Images/s for 32 pairs of distinct 1024 x 1024 images and one prompt each, at batch 1 and batch 16, on the CPU
and, when there is one, on the GPU; the library's one-image path (`get_similarity_map_from_raw_data`) is the
naive baseline.

Usage: python benchmarks/biovil_speed.py [--pairs N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cxrbench.methods.biovil import BioVil, BioVilT
from cxrbench.testing.biovil import write_tiny_biovil
from cxrbench.weights import pin

PROMPT = "left lower pneumonia"


def images(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [np.round(rng.random((1024, 1024)) * 255).astype(np.float32) / 255 for _ in range(n)]


def throughput(method: BioVil, pictures: list[np.ndarray], batch: int, device: str) -> float:
    """Images/s over `pictures` (none seen before: the method keeps recent images' embeddings)."""
    method.batch_size = batch
    warm_up = [1.0 - p for p in pictures[:batch]]
    method.heatmaps(warm_up, [PROMPT] * batch)  # and the prompt's embedding
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(0, len(pictures), batch):
        method.heatmaps(pictures[i : i + batch], [PROMPT] * len(pictures[i : i + batch]))
    if device == "cuda":
        torch.cuda.synchronize()
    return len(pictures) / (time.perf_counter() - start)


def library_path(method: BioVil, pictures: list[np.ndarray], folder: Path) -> float:
    """The library's own one-image path: load the file, transform, embed, map."""
    from health_multimodal.vlp import ImageTextInferenceEngine

    engine = ImageTextInferenceEngine(method.image_engine, method.text_engine)
    paths = []
    for i, picture in enumerate(pictures):
        paths.append(folder / f"{i}.png")
        Image.fromarray(np.round(picture * 255).astype(np.uint8)).save(paths[-1])
    start = time.perf_counter()
    for path in paths:
        engine.get_similarity_map_from_raw_data(path, PROMPT)
    return len(paths) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=32)
    args = parser.parse_args()
    pictures = images(args.pairs)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_tiny_biovil(root, "biovil")
        write_tiny_biovil(root, "biovil-t")
        pin(root)
        for cls in (BioVil, BioVilT):
            for device in devices:
                method = cls(weights=root, device=device)
                label = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
                naive = library_path(method, pictures[:8], root)
                rates = {}
                for batch in (1, 16):
                    method._patches.clear()
                    rates[batch] = throughput(method, pictures, batch, device)
                print(
                    f"{cls.name}, {label}: library one-image path {naive:.2f} images/s; cxrbench batch 1 "
                    f"{rates[1]:.2f} images/s ({rates[1] / naive:.2f}x), batch 16 {rates[16]:.2f} images/s "
                    f"({rates[16] / naive:.2f}x)"
                )
    if len(devices) == 1:
        print("no CUDA device: the GPU numbers were not measured")


if __name__ == "__main__":
    main()
