"""Work shared between LDM configurations (docs/ldm.md section 6): a configuration that reuses stored trajectories
and unthresholded maps gives bit for bit the heatmaps of an independent computation, and makes only the U-Net
calls the documentation promises (counted with a hook, against the schedule's arithmetic)."""

import numpy as np
import pytest

from ..conftest import require

torch = require("torch")
require("monai")
require("transformers")

SCHEDULE = 20  # trailing, stride 50: the published window is steps 8 .. 11; inverting to step 11 takes 11 calls
WINDOW = range(8, 12)
CLASSES = ["Pneumonia", "Pneumonia", "Pleural Effusion"]  # of the `pairs` below


@pytest.fixture(scope="module")
def pairs():
    from cxrbench.datasets.demo import DemoDataset

    samples = list(DemoDataset())
    first, second = samples[0], samples[7]  # "right lower pneumonia", "right pleural pleural effusion"
    image, other = first.load_image(), second.load_image()
    # two prompts on one image (inverted once) and a second image
    return [image, image, other], [first.prompt, "left lower pneumonia", second.prompt]


class Calls:
    """U-Net calls made inside the block."""

    def __init__(self, unet):
        self.unet = unet
        self.count = 0

    def __enter__(self):
        self.handle = self.unet.register_forward_pre_hook(lambda *_: setattr(self, "count", self.count + 1))
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def recording(models, layers="3,4,6,7", steps=WINDOW):
    from cxrbench.methods.ldm.attention import Recording, cross_attention_layers, select_layers

    return Recording(select_layers(layers, cross_attention_layers(models.unet)), steps, SCHEDULE)


@pytest.fixture
def tuned_codebook(models):
    """A codebook whose location rows moved (as tuning moves them): prompt contexts change, the empty one not."""
    from cxrbench.methods.ldm.codebook import Codebook

    codebook = Codebook.from_text_encoder(models.tokenizer, models.text_encoder)
    with torch.no_grad():
        codebook.location += 0.5 * torch.randn_like(codebook.location, generator=torch.Generator().manual_seed(0))
    return codebook


def test_configurations_reuse_trajectories_and_maps_with_identical_heatmaps(models, pairs, tuned_codebook, tmp_path):
    from cxrbench.methods.ldm.pipeline import fast_heatmaps
    from cxrbench.methods.ldm.shared import SharedWork

    images, prompts = pairs
    configurations = [  # (name, fast_heatmaps options, U-Net calls with the shared work of those before it)
        ("default", {"recording": recording(models)}, 11 + 4),  # nothing stored: inversion + recorded passes
        ("otsu off", {"recording": recording(models), "otsu": False}, 0),  # maps stored: no U-Net call
        ("all layers", {"recording": recording(models, "0-10")}, 4),  # trajectory stored: recorded passes only
        ("pathology tokens", {"recording": recording(models), "tokens": "pathology", "class_names": CLASSES}, 4),
        ("tuned codebook", {"recording": recording(models), "codebook": tuned_codebook}, 4),
        ("inner window", {"recording": recording(models, steps=range(9, 11))}, 2),  # inside the stored window
        ("wider window", {"recording": recording(models, steps=range(6, 12))}, 11 + 6),  # not inside: inverted again
    ]
    shared = SharedWork(tmp_path / "shared")
    for name, options, expected_calls in configurations:
        independent = fast_heatmaps(models, images, prompts, **options)
        with Calls(models.unet) as calls:
            reused = fast_heatmaps(models, images, prompts, shared=shared, **options)
        assert calls.count == expected_calls, name
        for a, b in zip(reused, independent, strict=True):
            assert np.array_equal(a, b), name
    # a fresh index of the folder (another process) sees the same entries
    with Calls(models.unet) as calls:
        again = fast_heatmaps(models, images, prompts, recording(models, "0-10"), shared=SharedWork(shared.folder))
    assert calls.count == 0
    independent = fast_heatmaps(models, images, prompts, recording(models, "0-10"))
    assert all(np.array_equal(a, b) for a, b in zip(again, independent, strict=True))


def test_a_corrupt_entry_is_dropped_and_recomputed(models, pairs, tmp_path):
    from cxrbench.methods.ldm.pipeline import fast_heatmaps
    from cxrbench.methods.ldm.shared import SharedWork

    images, prompts = pairs
    shared = SharedWork(tmp_path)
    expected = fast_heatmaps(models, images, prompts, recording(models), otsu=False, shared=shared)
    trajectories = sorted(tmp_path.glob("*/traj-*.npz"))
    assert len(trajectories) == 2  # one per distinct image
    data = bytearray(trajectories[0].read_bytes())
    data[-100] ^= 0xFF  # one flipped byte inside the latents
    trajectories[0].write_bytes(bytes(data))
    for entry in tmp_path.glob("*/maps-*.npz"):
        entry.unlink()
    with Calls(models.unet) as calls:
        again = fast_heatmaps(models, images, prompts, recording(models), otsu=False, shared=SharedWork(tmp_path))
    assert calls.count == 11 + 4  # the corrupt image inverted again, alone; the intact one read
    assert not trajectories[0].exists()
    # inverted in a batch of one instead of two: equal to float rounding (convolution kernels depend on the batch)
    for a, b in zip(again, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)


def test_runs_share_work_through_the_runner_and_force_recomputes(bundle, tmp_path):
    from cxrbench.benchmark.runner import run_benchmark
    from cxrbench.methods.ldm.zeroshot import LdmZeroShot

    def run(force=False, **options):
        method = LdmZeroShot(weights=bundle, schedule=SCHEDULE, **options)
        name = "+".join(f"{k}-{v}" for k, v in options.items()) or "default"
        with Calls(method.models.unet) as calls:
            result = run_benchmark(method, "demo", out=tmp_path, limit=2, name=name, progress=False, force=force)
        return result, calls.count

    _, calls = run()
    assert calls == 11 + 4  # both pairs in one batch: each U-Net call takes both images
    shared = tmp_path / "demo" / "heatmaps" / ".shared"
    assert len(list(shared.glob("*/traj-*.npz"))) == 2
    _, calls = run(otsu=False)
    assert calls == 0
    third, calls = run(layers="0-10")
    assert calls == 4  # recorded passes only, both pairs in one batch
    forced, calls = run(force=True, layers="0-10")
    assert calls == 11 + 4
    assert forced.scores.equals(third.scores)
    # the shared folder is no run and no method's cache: the table lists the three runs
    from cxrbench.benchmark.store import find_runs

    assert sorted(r.name for r in find_runs(tmp_path).runs) == ["default", "layers-0-10", "otsu-False"]


def test_a_folder_that_cannot_be_written_stops_storing_with_a_warning(tmp_path):
    from cxrbench.methods.ldm.shared import SharedWork

    folder = tmp_path / "shared"
    shared = SharedWork(folder)
    folder.rmdir()
    folder.write_text("not a folder")  # every write now fails, as on a full disk
    with pytest.warns(UserWarning, match=r"cannot write .*shared work is no longer stored"):
        shared.put_trajectory("0" * 64, range(2, 4), np.zeros((2, 3, 4, 4), np.float32))
    shared.put_maps("1" * 64, {16: np.zeros((16, 16))}, 3)  # no second warning, no error
    assert shared.trajectory("0" * 64, range(2, 4)) is None and shared.maps("1" * 64) is None


def test_an_entry_with_a_valid_checksum_but_other_arrays_is_dropped(tmp_path):
    import hashlib
    import io

    from cxrbench.methods.ldm.shared import SharedWork

    buffer = io.BytesIO()
    np.savez(buffer, other=np.zeros(3))
    data = buffer.getvalue()
    key = "a" * 64
    entry = tmp_path / key / f"traj-0-2-{hashlib.sha256(data).hexdigest()[:16]}.npz"
    entry.parent.mkdir()
    entry.write_bytes(data)
    assert SharedWork(tmp_path).trajectory(key, range(0, 2)) is None
    assert not entry.exists()


def test_an_entry_another_process_writes_later_is_found(tmp_path):
    """Two configurations at once (a sweep on Ray) each open the folder; what one stores, the other reads at once."""
    from cxrbench.methods.ldm.shared import SharedWork

    reader, writer = SharedWork(tmp_path), SharedWork(tmp_path)
    latents = np.arange(4 * 3 * 2 * 2, dtype=np.float32).reshape(4, 3, 2, 2)
    assert reader.trajectory("b" * 64, range(5, 7)) is None and reader.maps("c" * 64) is None
    writer.put_trajectory("b" * 64, range(4, 8), latents)
    writer.put_maps("c" * 64, {16: np.ones((16, 16))}, 7)
    np.testing.assert_array_equal(reader.trajectory("b" * 64, range(5, 7)), latents[1:3])  # a window inside
    assert reader.trajectory("b" * 64, range(3, 7)) is None  # not inside the stored window
    sums, count = reader.maps("c" * 64)
    assert count == 7 and list(sums) == [16] and (sums[16] == 1).all()
