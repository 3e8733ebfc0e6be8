"""biovil and biovil-t (docs/methods.md): hi-ml-multimodal's image model and CXR-BERT text model, and the library's
own similarity map: cosine similarity of the L2-normalised projected patch embeddings and the prompt's
projected text embedding, Gaussian-smoothed on the patch grid (sigma 1.5), mapped back to the image with
nearest interpolation into the crop the model saw (resize the shorter side to 512, centre crop 480 for
BioViL, 448 for BioViL-T), NaN elsewhere; negative similarities clamped to 0 as the published evaluation does.

The method returns the centred min(H, W) square cut from the library's H x W map
(`ImageTextInferenceEngine.convert_similarity_to_image_size`), so the shared scorer's NaN padding gives the
library's map exactly. Images enter as the library loads them: 8-bit, min-max remapped (`remap_to_uint8`),
its torchvision transform (DICOMs are first decoded by cxrbench's pipeline, VOI LUT and MONOCHROME1 applied,
where the library would take the raw pixel array). Images are embedded in batches (16 on a GPU, 1 on a CPU,
where larger batches were slower) and kept for the image's next pairs; each distinct prompt is embedded once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxrbench.errors import WeightsError
from cxrbench.hashing import array_digest, sha256_file
from cxrbench.weights import files_of, load_state_dict, verify, weights_root

RESIZE = 512
RECENT_IMAGES = 64


@dataclass(frozen=True)
class Variant:
    family: str  # weights family in cxrbench.weights
    image_file: str
    text_folder: str
    encoder: str  # hi-ml-multimodal ImageEncoderType member
    crop: int


VARIANTS = {
    "biovil": Variant(
        "biovil", "biovil_image_resnet50_proj_size_128.pt", "BiomedVLP-CXR-BERT-specialized", "RESNET50", 480
    ),
    "biovil-t": Variant(
        "biovil-t", "biovil_t_image_model_proj_size_128.pt", "BiomedVLP-BioViL-T", "RESNET50_MULTI_IMAGE", 448
    ),
}


def build_image_model(variant: Variant) -> Any:
    """The library's ImageModel for the variant, random weights (128-d joint space)."""
    from health_multimodal.image import ImageModel
    from health_multimodal.image.model.types import ImageEncoderType

    return ImageModel(img_encoder_type=getattr(ImageEncoderType, variant.encoder), joint_feature_size=128)


class BioVil:
    """BioViL: ResNet-50 image encoder and CXR-BERT-specialized, through hi-ml-multimodal."""

    name = "biovil"
    interpolation = "nearest"  # the map is already min(H, W) square: the scorer's resize leaves it as it is

    def __init__(
        self,
        weights: str | Path | None = None,
        device: str = "cpu",
        batch_size: int | None = None,
        allow_unverified_weights: bool = False,
    ):
        import torch
        from health_multimodal.image import ImageInferenceEngine
        from health_multimodal.image.data.transforms import create_chest_xray_transform_for_inference
        from health_multimodal.text import TextInferenceEngine
        from health_multimodal.text.model import CXRBertModel, CXRBertTokenizer

        variant = VARIANTS[self.name]
        root = weights_root(weights)
        allow = bool(allow_unverified_weights)
        files = {f.path: f for f in files_of(variant.family)}
        image = build_image_model(variant)
        state = load_state_dict(files[variant.image_file], root, allow)
        try:
            image.load_state_dict(state)
        except RuntimeError as exc:
            raise WeightsError(f"{root / variant.image_file} does not fit the {self.name} image model: {exc}") from exc
        for path, file in files.items():
            if path.startswith(variant.text_folder):
                verify(file, root, allow)
        folder = str(root / variant.text_folder)
        tokenizer = CXRBertTokenizer.from_pretrained(folder, local_files_only=True)
        text = CXRBertModel.from_pretrained(folder, local_files_only=True, use_safetensors=False)
        self.device = torch.device(device)
        transform = create_chest_xray_transform_for_inference(resize=RESIZE, center_crop_size=variant.crop)
        self.image_engine = ImageInferenceEngine(image_model=image.to(self.device).eval(), transform=transform)
        self.text_engine = TextInferenceEngine(tokenizer=tokenizer, text_model=text.to(self.device).eval())
        # ResNet-50 on a 2-core CPU: 2.8 images/s at batch 1, 1.1 at batch 16 (benchmarks/biovil_speed.py)
        self.batch_size = int(batch_size or (16 if self.device.type == "cuda" else 1))
        self.crop = variant.crop
        self.hashes = {path: sha256_file(root / path) for path in files}
        self._text: dict[str, Any] = {}
        self._patches: OrderedDict[str, Any] = OrderedDict()

    def config(self) -> dict[str, object]:
        return {"weights": self.hashes, "resize": RESIZE, "crop": self.crop, "negative": "clamped to 0"}

    def _image_input(self, image: np.ndarray) -> Any:
        """The library's input: 8-bit, min-max remapped (as `load_image`), then its transform."""
        from health_multimodal.image.data.io import remap_to_uint8
        from PIL import Image

        pixels = remap_to_uint8(np.round(np.asarray(image, dtype=np.float64) * 255.0))
        return self.image_engine.transform(Image.fromarray(pixels).convert("L"))

    def _text_embeddings(self, prompts: Sequence[str]) -> Any:
        new = [p for p in dict.fromkeys(prompts) if p not in self._text]
        if new:
            embeddings = self.text_engine.get_embeddings_from_prompt(new, normalize=True)
            self._text.update(zip(new, embeddings, strict=True))
        return [self._text[p] for p in prompts]

    def heatmaps(self, images: Sequence[np.ndarray], prompts: Sequence[str]) -> list[np.ndarray]:
        import torch
        from health_multimodal.vlp import ImageTextInferenceEngine

        keys = [array_digest(im) for im in images]
        first = {k: im for k, im in zip(keys, images, strict=True)}
        new = [k for k in first if k not in self._patches]
        model = self.image_engine.model
        with torch.no_grad():
            for start in range(0, len(new), self.batch_size):
                batch = new[start : start + self.batch_size]
                pixels = torch.stack([self._image_input(first[k]) for k in batch]).to(self.device)
                embedded = model.get_patchwise_projected_embeddings(pixels, normalize=True)
                self._patches.update(zip(batch, embedded, strict=True))
            texts = self._text_embeddings(prompts)
        patches = {k: self._patches[k] for k in first}
        while len(self._patches) > RECENT_IMAGES:  # an image's pairs follow each other: keep the last few
            self._patches.popitem(last=False)
        out = []
        for key, image, text in zip(keys, images, texts, strict=True):
            height, width = image.shape
            similarity = ImageTextInferenceEngine._get_similarity_map_from_embeddings(patches[key], text[None])
            full = ImageTextInferenceEngine.convert_similarity_to_image_size(
                similarity, width=width, height=height, resize_size=RESIZE, crop_size=self.crop
            )
            side = min(height, width)
            top, left = (height - side) // 2, (width - side) // 2
            out.append(np.maximum(full[top : top + side, left : left + side], 0.0).astype(np.float32))
        return out

    def heatmap(self, image: np.ndarray, prompt: str) -> np.ndarray:
        return self.heatmaps([image], [prompt])[0]


class BioVilT(BioVil):
    """BioViL-T: the temporal ResNet-50 image encoder (current image only) and its CXR-BERT."""

    name = "biovil-t"
