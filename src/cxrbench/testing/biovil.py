"""Tiny BioViL / BioViL-T weight folders in the real layout, random weights: the image model's state dict
(`*.pt`, the library's ResNet-50 ImageModel) and a 1-layer CXR-BERT folder (config.json, pytorch_model.bin,
vocab.txt, tokenizer_config.json) written by hi-ml-multimodal's own classes."""

from __future__ import annotations

from pathlib import Path

WORDS = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "left",
    "right",
    "bilateral",
    "lower",
    "upper",
    "middle",
    "base",
    "apical",
    "pleural",
    "pneumonia",
    "atelectasis",
    "effusion",
    "edema",
    "consolidation",
    "opacity",
    "cardiomegaly",
    "pneumothorax",
    "lung",
    "<",
    ">",
    "and",
    "##s",
]


def write_tiny_biovil(root: Path, name: str = "biovil", seed: int = 0) -> Path:
    import torch
    from health_multimodal.text.model import CXRBertConfig, CXRBertModel, CXRBertTokenizer

    from cxrbench.methods.biovil import VARIANTS, build_image_model

    variant = VARIANTS[name]
    torch.manual_seed(seed)
    root.mkdir(parents=True, exist_ok=True)
    torch.save(build_image_model(variant).state_dict(), root / variant.image_file)
    folder = root / variant.text_folder
    folder.mkdir(exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    CXRBertTokenizer(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    config = CXRBertConfig(
        vocab_size=len(WORDS),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        projection_size=128,
    )
    CXRBertModel(config).save_pretrained(folder, safe_serialization=False)
    return root
