"""The tiny random LDM bundle (real formats, real CLIP BPE tokenizer), written once per test session."""

import pytest

from ..conftest import require


@pytest.fixture(scope="session")
def bundle(tmp_path_factory):
    for module in ("torch", "monai", "transformers", "safetensors", "generative", "open_clip"):
        require(module)  # the `fixtures` extra: monai-generative writes the old names, open_clip ships CLIP's BPE
    from cxrbench.testing.ldm import write_tiny_bundle
    from cxrbench.weights import pin

    root = write_tiny_bundle(tmp_path_factory.mktemp("weights"))
    pin(root)
    return root


@pytest.fixture(scope="session")
def models(bundle):
    from cxrbench.methods.ldm.model import load_ldm

    return load_ldm(bundle)
