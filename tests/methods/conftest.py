"""The tiny random LDM bundle (real formats, real CLIP BPE tokenizer), written once per test session."""

import pytest

from ..conftest import require


@pytest.fixture(scope="session")
def bundle(tmp_path_factory):
    require("torch")
    require("generative")  # monai-generative, test-only (installed with --no-deps): writes the old names
    from cxrbench.testing.ldm import write_tiny_bundle
    from cxrbench.weights import pin

    root = write_tiny_bundle(tmp_path_factory.mktemp("weights"))
    pin(root)
    return root


@pytest.fixture(scope="session")
def models(bundle):
    from cxrbench.methods.ldm.model import load_ldm

    return load_ldm(bundle)
