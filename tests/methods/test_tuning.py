"""ldm-tuned: codebook, losses against naive formulas, what trains, checkpoint/resume, the method and `tune`."""

import math

import numpy as np
import pytest

from ..conftest import require

torch = require("torch")
require("monai")
require("transformers")


@pytest.fixture(scope="module")
def tuning_set(tmp_path_factory):
    from cxrbench.datasets.mimic import read_tuning_set
    from cxrbench.testing.mimic import write_demo_tuning_set

    path = write_demo_tuning_set(tmp_path_factory.mktemp("tuning"), 4)
    samples, problems = read_tuning_set(path)
    assert not problems
    return path, samples


@pytest.fixture(scope="module")
def latents(models, tuning_set):
    from cxrbench.methods.ldm.tuning import encode_latents

    latents, problems = encode_latents(models, tuning_set[1], progress=False)
    assert not problems
    return latents


def config(**changes):
    from cxrbench.methods.ldm.tuning import TuneConfig

    return TuneConfig(**{"lr": 0.05, "timestep_chunk": 30, **changes})


# ---------------------------------------------------------------- codebook


def test_codebook_rows_follow_the_real_tokenizer(models):
    from cxrbench.anatomy.vocabulary import AND, LOCATIONS, PATHOLOGIES
    from cxrbench.methods.ldm.codebook import codebook_rows

    tok = models.tokenizer
    rows = codebook_rows(tok)
    ids = [r.token_id for r in rows]
    assert len(ids) == len(set(ids))
    by_kind = {k: {r.token_id for r in rows if r.kind == k} for k in ("location", "pathology", "special")}
    location_ids = {i for term in LOCATIONS for i in tok(term, add_special_tokens=False).input_ids}
    pathology_ids = {i for p in PATHOLOGIES for i in tok(p.lower(), add_special_tokens=False).input_ids}
    special = {
        tok.bos_token_id,
        tok.eos_token_id,
        tok.pad_token_id,
        *tok(AND.strip(), add_special_tokens=False).input_ids,
    }
    assert by_kind["special"] == special
    assert by_kind["location"] == location_ids - special
    assert by_kind["pathology"] == pathology_ids - location_ids - special
    assert len(special) == 6  # "<and>" is 3 CLIP sub-tokens; <pad> is "!" in SD-2.1
    assert tok.convert_ids_to_tokens(tok("pleural", add_special_tokens=False).input_ids) == ["ple", "ural</w>"]
    assert 40 <= len(rows) <= 55  # the tuning paper: ~46 rows


def test_substitution_equals_a_naive_lookup():
    from cxrbench.methods.ldm.codebook import Codebook, CodebookRow

    gen = torch.Generator().manual_seed(0)
    table = torch.randn(50, 8, generator=gen)
    rows = [CodebookRow(i, str(i), kind, ()) for i, kind in ((3, "location"), (7, "pathology"), (9, "location"))]
    book = Codebook(rows, torch.randn(3, 8, generator=gen))
    ids = torch.tensor([[0, 3, 7, 9, 3, 49], [9, 9, 1, 2, 7, 0]])
    got = book.substitute(ids, table[ids])
    rows_of = {3: 0, 7: 1, 9: 2}
    for b in range(2):
        for k in range(6):
            token = int(ids[b, k])
            want = book.table()[rows_of[token]] if token in rows_of else table[token]
            assert torch.equal(got[b, k], want)


def test_codebook_at_initialisation_leaves_the_text_encoder_unchanged(models):
    from cxrbench.methods.ldm.codebook import Codebook
    from cxrbench.methods.ldm.pipeline import encode_text

    book = Codebook.from_text_encoder(models.tokenizer, models.text_encoder)
    prompts = ["left lower <and> right base atelectasis", "pneumonia", ""]
    assert torch.equal(encode_text(models, prompts, book), encode_text(models, prompts))
    with torch.no_grad():
        book.location[book.rows.index(next(r for r in book.rows if r.token == "lower</w>"))] += 1.0
    moved = encode_text(models, prompts, book)
    plain = encode_text(models, prompts)
    assert not torch.allclose(moved[0], plain[0])
    assert torch.equal(moved[1:], plain[1:])  # prompts without "lower" are untouched


# ---------------------------------------------------------------- losses


def naive_diversity(maps: np.ndarray) -> float:
    k = len(maps)
    if k < 2:
        return 0.0
    total = 0.0
    for i in range(k):
        for j in range(k):
            if i != j:
                total += float(maps[i] @ maps[j]) / (math.sqrt(maps[i] @ maps[i]) * math.sqrt(maps[j] @ maps[j]))
    return total / (k * (k - 1))


def test_diversity_loss_matches_the_pairwise_formula():
    from cxrbench.methods.ldm.tuning import diversity_loss

    rng = np.random.default_rng(1)
    for k in (1, 2, 5):
        maps = rng.random((k, 256))
        assert float(diversity_loss(torch.from_numpy(maps))) == pytest.approx(naive_diversity(maps), abs=1e-12)
    same = torch.ones(3, 16)
    assert float(diversity_loss(same)) == pytest.approx(1.0)
    disjoint = torch.eye(4, 16)
    assert float(diversity_loss(disjoint)) == 0.0


def test_localization_loss_matches_the_formula_and_stops_the_gradient_of_the_target():
    from cxrbench.methods.ldm.tuning import localization_loss

    rng = np.random.default_rng(2)
    a, g = rng.random(256), rng.random(256)
    alpha, beta = 0.7, 1.3
    target = alpha * (g >= math.exp(-2)) * a + beta * g
    want = 1 - (a @ target) / (np.linalg.norm(a) * np.linalg.norm(target))
    a_t = torch.tensor(a, requires_grad=True)
    loss = localization_loss(a_t, torch.from_numpy(g), alpha, beta)
    assert loss.item() == pytest.approx(want, abs=1e-12)
    loss.backward()
    fixed = torch.tensor(a, requires_grad=True)  # the target as a constant: sg(A)
    (1 - torch.nn.functional.cosine_similarity(fixed, torch.from_numpy(target), dim=0)).backward()
    assert torch.allclose(a_t.grad, fixed.grad)
    perfect = torch.from_numpy(g)
    assert float(localization_loss(perfect, perfect, 0.0, 1.0)) == pytest.approx(0.0, abs=1e-12)


def test_gaussian_target_is_the_union_of_the_locations():
    from cxrbench.anatomy.lut import Gaussian2D
    from cxrbench.methods.ldm.tuning import gaussian_target

    right, left = Gaussian2D(128, 256, 40, 80), Gaussian2D(384, 256, 40, 80)
    both = gaussian_target([right, left], 16)
    yy, xx = np.mgrid[0:16, 0:16] + 0.5
    naive = np.maximum(
        *(
            np.exp(-0.5 * ((xx * 32 - g.mu_x) / g.sigma_x) ** 2 - 0.5 * ((yy * 32 - g.mu_y) / g.sigma_y) ** 2)
            for g in (right, left)
        )
    )
    np.testing.assert_allclose(both, naive, rtol=1e-5)
    assert both.shape == (16, 16) and both.max() <= 1.0


# ---------------------------------------------------------------- training


def test_gradients_reach_only_location_rows_of_the_prompt(models, tuning_set, latents):
    from cxrbench.methods.ldm.attention import TUNING_LAYERS, TimestepMaps
    from cxrbench.methods.ldm.codebook import Codebook
    from cxrbench.methods.ldm.tuning import encode_prompt, noise_for_step, training_losses

    sample = next(s for s in tuning_set[1] if "<and>" not in s.prompt)
    book = Codebook.from_text_encoder(models.tokenizer, models.text_encoder)
    special = {r.token_id for r in book.rows if r.kind == "special"}
    prompt = encode_prompt(models.tokenizer, sample.prompt, special)
    noise = noise_for_step(0, 0, (30, *latents[sample.image].shape))
    with TimestepMaps(models.unet, TUNING_LAYERS) as maps:
        losses = training_losses(models, book, maps, latents[sample.image], prompt, sample.gaussians, noise, config())
        losses["loss"].backward()
    used = set(prompt.ids.tolist())
    location_rows = [r for r in book.rows if r.kind == "location"]
    for row, grad in zip(location_rows, book.location.grad, strict=True):
        assert bool(grad.abs().sum() > 0) == (row.token_id in used), row.token
    assert not book.fixed.requires_grad
    assert all(p.grad is None for m in (models.unet, models.text_encoder, models.autoencoder) for p in m.parameters())


def model_weights(models) -> dict:
    """A copy of every tensor of the VAE, U-Net and text encoder."""
    nets = {"unet": models.unet, "text": models.text_encoder, "vae": models.autoencoder}
    return {f"{name}.{k}": v.clone() for name, net in nets.items() for k, v in net.state_dict().items()}


def test_short_run_trains_location_rows_only_and_lowers_the_localization_loss(models, tuning_set, latents, tmp_path):
    from cxrbench.datasets.images import load_jpg
    from cxrbench.methods.ldm.attention import TUNING_LAYERS, TimestepMaps
    from cxrbench.methods.ldm.codebook import Codebook
    from cxrbench.methods.ldm.pipeline import fast_heatmaps
    from cxrbench.methods.ldm.tuning import (
        encode_prompt,
        gaussian_target,
        noise_for_step,
        training_losses,
        tune,
    )

    samples = tuning_set[1]
    weights = model_weights(models)
    initial = Codebook.from_text_encoder(models.tokenizer, models.text_encoder)
    result = tune(models, samples, config(epochs=3), tmp_path, progress=False, latents=latents)
    tuned = Codebook.load(result.checkpoint / "codebook.safetensors", models.tokenizer, models.text_encoder)
    assert torch.equal(tuned.fixed, initial.fixed)
    assert not torch.equal(tuned.location, initial.location)
    after = model_weights(models)
    assert weights.keys() == after.keys() and all(torch.equal(weights[k], after[k]) for k in weights)

    def localization(book):
        special = {r.token_id for r in book.rows if r.kind == "special"}
        out = []
        with TimestepMaps(models.unet, TUNING_LAYERS) as maps, torch.no_grad():
            for i, s in enumerate(samples):
                noise = noise_for_step(99, i, (30, *latents[s.image].shape))  # noise the run never saw
                prompt = encode_prompt(models.tokenizer, s.prompt, special)
                out.append(
                    float(
                        training_losses(models, book, maps, latents[s.image], prompt, s.gaussians, noise, config())[
                            "localization"
                        ]
                    )
                )
        return np.array(out)

    assert localization(tuned).mean() < localization(initial).mean() - 0.005

    def cosine_to_target(book):
        heat = fast_heatmaps(
            models, [load_jpg(s.image) for s in samples], [s.prompt for s in samples], otsu=False, codebook=book
        )
        cos = []
        for h, s in zip(heat, samples, strict=True):
            g = gaussian_target(s.gaussians, 512).ravel()
            cos.append(h.ravel() @ g / (np.linalg.norm(h) * np.linalg.norm(g)))
        return np.mean(cos)

    assert cosine_to_target(tuned) > cosine_to_target(initial) + 0.01


def test_killed_then_resumed_run_equals_an_uninterrupted_run(models, tuning_set, latents, tmp_path):
    from cxrbench.methods.ldm.checkpoints import checkpoint_dirs
    from cxrbench.methods.ldm.codebook import Codebook
    from cxrbench.methods.ldm.tuning import tune

    samples = tuning_set[1]
    run = config(epochs=2, checkpoint_every=3)
    whole = tune(models, samples, run, tmp_path / "whole", progress=False, latents=latents)

    def kill_at_5(step, losses):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tune(models, samples, run, tmp_path / "cut", progress=False, latents=latents, on_step=kill_at_5)
    assert [p.name for p in checkpoint_dirs(tmp_path / "cut")] == ["step-00000003"]
    (tmp_path / "cut" / ".tmp-step-00000006").mkdir()  # a checkpoint whose write was killed
    (tmp_path / "cut" / "step-00000006").mkdir()
    resumed = tune(models, samples, run, tmp_path / "cut", resume=True, progress=False, latents=latents)
    assert resumed.steps == whole.steps == 8
    books = [
        Codebook.load(r.checkpoint / "codebook.safetensors", models.tokenizer, models.text_encoder)
        for r in (whole, resumed)
    ]
    assert torch.equal(books[0].table(), books[1].table())
    assert (tmp_path / "whole" / "losses.csv").read_text() == (tmp_path / "cut" / "losses.csv").read_text()


def test_resume_refuses_other_options_or_no_checkpoint(models, tuning_set, latents, tmp_path):
    from cxrbench.errors import CxrbenchError
    from cxrbench.methods.ldm.tuning import tune

    samples = tuning_set[1][:1]
    with pytest.raises(CxrbenchError, match="no checkpoint"):
        tune(models, samples, config(), tmp_path, resume=True, progress=False, latents=latents)
    tune(models, samples, config(), tmp_path, progress=False, latents=latents)
    with pytest.raises(CxrbenchError, match="alpha, lr differ"):
        tune(models, samples, config(alpha=0.5, lr=0.01), tmp_path, resume=True, progress=False, latents=latents)


# ---------------------------------------------------------------- the method and the command


def test_ldm_tuned_with_the_initial_codebook_is_zero_shot_without_otsu(bundle, models, tuning_set, tmp_path):
    from cxrbench.datasets.images import load_jpg
    from cxrbench.errors import CxrbenchError, WeightsError
    from cxrbench.methods.ldm.codebook import Codebook
    from cxrbench.methods.ldm.pipeline import fast_heatmaps
    from cxrbench.methods.ldm.tuned import LdmTuned

    sample = tuning_set[1][0]
    image = load_jpg(sample.image)
    Codebook.from_text_encoder(models.tokenizer, models.text_encoder).save(tmp_path)
    method = LdmTuned(checkpoint=tmp_path, weights=bundle)
    want = fast_heatmaps(models, [image], [sample.prompt], otsu=False)[0]
    np.testing.assert_array_equal(method.heatmap(image, sample.prompt), want)
    assert method.config()["otsu"] is False and len(method.config()["checkpoint"]["sha256"]) == 64
    with pytest.raises(CxrbenchError, match="needs --checkpoint"):
        LdmTuned(weights=bundle)
    (tmp_path / "codebook.safetensors").write_bytes(b"not a codebook")
    with pytest.raises(WeightsError, match="not a cxrbench codebook"):
        LdmTuned(checkpoint=tmp_path, weights=bundle)


def test_tune_command_reports_a_missing_image_and_skips_it_on_request(bundle, cli, tuning_set, tmp_path):
    path, _ = tuning_set
    lines = path.read_text().splitlines()
    broken = tmp_path / "tuning.csv"
    broken.write_text("\n".join([lines[0], lines[1].replace("demo000", "gone"), lines[2]]) + "\n")
    args = ["tune", "--tuning-set", str(broken), "--images", str(path.parent), "--weights", str(bundle)]
    args += ["--output", str(tmp_path / "ckpt"), "--no-progress", "--timestep-chunk", "30"]
    failed = cli(*args)
    assert failed.returncode == 2
    assert f"{broken}, line 2: image not found" in failed.stderr and "Traceback" not in failed.stderr
    assert not (tmp_path / "ckpt").exists()
    done = cli(*args, "--on-error", "skip", timeout=300)
    assert done.returncode == 0, done.stderr
    assert "1 steps on 1 samples" in done.stdout
    assert "line 2" in (tmp_path / "ckpt" / "skipped.csv").read_text()
    shown = cli("tune", "--show-codebook", "--weights", str(bundle), "--output", str(tmp_path / "ckpt"))
    assert shown.returncode == 0 and "step-00000001" in shown.stdout
    assert "ple" in shown.stdout and "location" in shown.stdout


def test_tune_killed_with_sigkill_then_resumed_gives_the_uninterrupted_codebook(bundle, tuning_set, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from safetensors.torch import load_file

    from cxrbench.methods.ldm.checkpoints import checkpoint_dirs

    from ..conftest import cxrbench_env

    path, samples = tuning_set
    steps = 3 * len(samples)

    def command(output: str, *extra: str) -> list[str]:
        return [
            *(sys.executable, "-m", "cxrbench", "tune", "--tuning-set", str(path), "--weights", str(bundle)),
            *("--output", output, "--epochs", "3", "--lr", "0.05", "--checkpoint-every", "1", "--no-progress"),
            *extra,
        ]

    env = cxrbench_env(tmp_path, plugin=False)
    proc = subprocess.Popen(command("killed"), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and not (tmp_path / "killed" / "step-00000002").is_dir():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = checkpoint_dirs(tmp_path / "killed")
    assert done and int(done[-1].name.split("-")[1]) < steps, "the run was not cut short"
    resumed = subprocess.run(command("killed", "--resume"), cwd=tmp_path, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    clean = subprocess.run(command("clean"), cwd=tmp_path, env=env, capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr
    final = f"step-{steps:08d}/codebook.safetensors"
    a, b = load_file(tmp_path / "killed" / final), load_file(tmp_path / "clean" / final)
    assert torch.equal(a["embeddings"], b["embeddings"])
    assert (tmp_path / "killed" / "losses.csv").read_text() == (tmp_path / "clean" / "losses.csv").read_text()


def test_bfloat16_step_with_checkpointed_chunks_agrees_with_float32(bundle, models, tuning_set, latents):
    from cxrbench.methods.ldm.attention import TUNING_LAYERS, TimestepMaps
    from cxrbench.methods.ldm.codebook import Codebook
    from cxrbench.methods.ldm.model import load_ldm
    from cxrbench.methods.ldm.tuning import encode_prompt, noise_for_step, training_losses

    sample = tuning_set[1][0]
    half = load_ldm(bundle, dtype="bfloat16")
    results = []
    for net, chunk in ((models, 30), (half, 7)):  # 7: uneven chunks under activation checkpointing
        book = Codebook.from_text_encoder(net.tokenizer, net.text_encoder)
        special = {r.token_id for r in book.rows if r.kind == "special"}
        prompt = encode_prompt(net.tokenizer, sample.prompt, special)
        noise = noise_for_step(0, 0, (30, *latents[sample.image].shape))
        with TimestepMaps(net.unet, TUNING_LAYERS) as maps:
            losses = training_losses(
                net, book, maps, latents[sample.image], prompt, sample.gaussians, noise, config(timestep_chunk=chunk)
            )
            losses["loss"].backward()
        assert book.location.grad.dtype == torch.float32 and torch.isfinite(book.location.grad).all()
        results.append((losses["localization"].item(), book.location.grad))
    assert results[1][0] == pytest.approx(results[0][0], abs=0.02)
    cosine = torch.nn.functional.cosine_similarity(results[0][1].flatten(), results[1][1].flatten(), dim=0)
    assert cosine > 0.9


# ---------------------------------------------------------------- checkpoint files and what a checkpoint records


def small_codebook_and_adam():
    from cxrbench.methods.ldm.codebook import Codebook, CodebookRow

    rows = [
        CodebookRow(3, "a", "location", ()),
        CodebookRow(5, "b", "location", ()),
        CodebookRow(7, "c", "special", ()),
    ]
    book = Codebook(rows, torch.randn(3, 4, generator=torch.Generator().manual_seed(0)))
    adam = torch.optim.Adam([book.location], lr=0.1)
    book.location.grad = torch.ones_like(book.location)
    adam.step()  # Adam has moments to save
    return book, adam


def test_an_interrupted_save_leaves_no_checkpoint_that_resume_would_pick_up(tmp_path, monkeypatch):
    from cxrbench.benchmark import store
    from cxrbench.methods.ldm import checkpoints, codebook
    from cxrbench.methods.ldm.checkpoints import checkpoint_dirs, resolve_checkpoint, save_checkpoint

    book, adam = small_codebook_and_adam()
    first = save_checkpoint(tmp_path, 1, book, adam, {"config": {}})
    written = []

    def killed_at_state(path, data):
        written.append(path.name)
        if path.name == "state.json":
            raise KeyboardInterrupt  # the process dies while the last file is written
        store.write_atomic(path, data)

    for module in (checkpoints, codebook):  # every file goes through the shared atomic writer
        monkeypatch.setattr(module, "write_atomic", killed_at_state)
    for step in (2, 1):  # a new step, and the step of the complete checkpoint (which must survive)
        with pytest.raises(KeyboardInterrupt):
            save_checkpoint(tmp_path, step, book, adam, {"config": {}})
        assert checkpoint_dirs(tmp_path) == [first] and resolve_checkpoint(tmp_path) == first
        assert not (tmp_path / "step-00000002").exists()
    assert written == ["codebook.safetensors", "optimizer.safetensors", "state.json"] * 2
    monkeypatch.undo()
    second = save_checkpoint(tmp_path, 2, book, adam, {"config": {}})
    assert checkpoint_dirs(tmp_path) == [first, second]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000001", "step-00000002"]  # leftovers removed
    assert sorted(p.name for p in second.iterdir()) == ["codebook.safetensors", "optimizer.safetensors", "state.json"]


def test_resume_counts_an_option_a_checkpoint_predates_as_its_default(tmp_path):
    from dataclasses import asdict

    from cxrbench.errors import CxrbenchError
    from cxrbench.methods.ldm.checkpoints import check_resumable
    from cxrbench.methods.ldm.tuning import TuneConfig

    defaults = asdict(TuneConfig())
    fields = {"tuning_set_sha256": "x", "samples": 4, "weights": {}}
    old = {"config": {k: v for k, v in defaults.items() if k not in ("localization_weight", "steps", "schedule")}}
    check_resumable({**old, **fields}, {"config": asdict(TuneConfig()), **fields}, tmp_path, defaults)
    new = asdict(TuneConfig(localization_weight=2.0, steps=(20, 40)))
    with pytest.raises(CxrbenchError, match="localization_weight, steps differ"):
        check_resumable({**old, **fields}, {"config": new, **fields}, tmp_path, defaults)


def test_loss_weights_and_timestep_window_are_applied_and_recorded(bundle, models, tuning_set, latents, tmp_path):
    from cxrbench.errors import CxrbenchError
    from cxrbench.methods.ldm.attention import TUNING_LAYERS, TimestepMaps
    from cxrbench.methods.ldm.codebook import Codebook
    from cxrbench.methods.ldm.tuned import LdmTuned
    from cxrbench.methods.ldm.tuning import TuneConfig, encode_prompt, noise_for_step, training_losses, tune

    sample = tuning_set[1][0]
    book = Codebook.from_text_encoder(models.tokenizer, models.text_encoder)
    special = {r.token_id for r in book.rows if r.kind == "special"}
    prompt = encode_prompt(models.tokenizer, sample.prompt, special)
    noise = noise_for_step(0, 0, (10, *latents[sample.image].shape))
    window = config(localization_weight=2.0, diversity_weight=0.5, steps=(10, 20), schedule=50)
    assert window.recording().recorded_timesteps() == tuple(range(200, 400, 20))  # leading: t = 20 k
    with TimestepMaps(models.unet, TUNING_LAYERS) as maps, torch.no_grad():
        got = training_losses(models, book, maps, latents[sample.image], prompt, sample.gaussians, noise, window)
        given = training_losses(
            models, book, maps, latents[sample.image], prompt, sample.gaussians, noise, config(), range(200, 400, 20)
        )
    assert float(got["loss"]) == pytest.approx(2.0 * float(given["localization"]) + 0.5 * float(given["diversity"]))
    assert float(got["localization"]) == float(given["localization"])
    assert TuneConfig(steps="20-40").steps == (20, 40)  # --steps text
    for bad in ({"steps": (90, 110)}, {"schedule": 0}, {"alpha": -1.0}, {"diversity_weight": float("nan")}):
        with pytest.raises(CxrbenchError, match="--"):
            TuneConfig(**bad)

    tune(models, tuning_set[1][:1], window, tmp_path, progress=False, latents=latents)
    tuned_with = LdmTuned(checkpoint=tmp_path, weights=bundle).config()["checkpoint"]["tuned_with"]
    assert {k: tuned_with[k] for k in ("alpha", "beta", "localization_weight", "diversity_weight", "lr")} == {
        "alpha": 1.0,
        "beta": 1.0,
        "localization_weight": 2.0,
        "diversity_weight": 0.5,
        "lr": 0.05,
    }
    assert (tuned_with["steps"], tuned_with["schedule"]) == ([10, 20], 50)
    assert tuned_with["timesteps"] == list(range(200, 400, 20)) and tuned_with["layers"] == list(TUNING_LAYERS)
    assert "timestep_chunk" not in tuned_with and "checkpoint_every" not in tuned_with
