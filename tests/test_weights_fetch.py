"""`cxrbench weights fetch` (docs/weights.md): through huggingface_hub's cache offline (HF_HUB_OFFLINE=1, a hub
cache in the layout huggingface_hub writes) and MONAI's bundle download from a local copy of the bundle's zip."""

import hashlib
import inspect
import json
import shutil
import zipfile

import pytest

from cxrbench.testing.hub import publish_folder, tar_gz, write_hub_repo
from cxrbench.weights import (
    LDM_BUNDLE,
    LDM_BUNDLE_VERSION,
    PIN_FILE,
    RADGRAPH_BERT,
    RADGRAPH_BERT_FOLDER,
    WEIGHT_FILES,
    status,
    weights_root,
)

from .conftest import require, require_torch

BERT = ("config.json", "pytorch_model.bin", "vocab.txt", "tokenizer_config.json")


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("CXRBENCH_HOME", str(tmp_path / "home"))
    (tmp_path / "hub").mkdir()
    return tmp_path / "hub"


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pins(root):
    return dict(reversed(line.split("  ", 1)) for line in (root / PIN_FILE).read_text().splitlines())


def _leftovers(root):
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def _cache_biovil(tmp_path, hub, revisions):
    """Tiny BioViL files as microsoft/BiomedVLP-CXR-BERT-specialized holds them (all at the repo's root), plus a
    file of the repo cxrbench does not read."""
    from cxrbench.testing.biovil import write_tiny_biovil

    layout = write_tiny_biovil(tmp_path / "tiny", "biovil", seed=3)
    files = {name: (layout / "BiomedVLP-CXR-BERT-specialized" / name).read_bytes() for name in BERT}
    files["biovil_image_resnet50_proj_size_128.pt"] = (layout / "biovil_image_resnet50_proj_size_128.pt").read_bytes()
    files["README.md"] = b"# CXR-BERT\n"
    snapshot = write_hub_repo(hub, "microsoft/BiomedVLP-CXR-BERT-specialized", files, revisions=revisions)
    return layout, snapshot


def test_fetch_biovil_resolves_from_the_hub_cache_pins_and_loads(cli, tmp_path, hub):
    torch = require_torch()
    require("health_multimodal")
    from cxrbench.methods.biovil import BioVil

    layout, snapshot = _cache_biovil(tmp_path, hub, ("main",))
    result = cli("weights", "fetch", "biovil", "--weights", "w", "--revision", "main")
    assert result.returncode == 0, result.stderr
    root = tmp_path / "w"
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == sorted(
        [PIN_FILE, "PROVENANCE.json", "biovil_image_resnet50_proj_size_128.pt"]
        + [f"BiomedVLP-CXR-BERT-specialized/{n}" for n in BERT]
    )  # README.md is not fetched; no staging folder is left
    image = "biovil_image_resnet50_proj_size_128.pt"
    assert _pins(root)[image] == _sha256(layout / image)
    provenance = json.loads((root / "PROVENANCE.json").read_text())[image]
    assert provenance["source"] == "Hugging Face microsoft/BiomedVLP-CXR-BERT-specialized"
    assert provenance["revision"] == snapshot.name and provenance["sha256"] == _sha256(layout / image)
    assert all(r["status"] == "ok" for r in status(root) if r["family"] == "biovil")
    model = BioVil(weights=root).image_engine.model.state_dict()
    expected = torch.load(layout / image, weights_only=True)
    assert all(torch.equal(model[k], v) for k, v in expected.items())


def test_fetch_at_hi_ml_revision_checks_its_md5_and_leaves_nothing(cli, tmp_path, hub):
    require_torch()
    require("health_multimodal")
    _cache_biovil(tmp_path, hub, ("v1.1",))  # random weights at hi-ml-multimodal's revision: not its md5
    result = cli("weights", "fetch", "biovil", "--weights", "w")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "not the 02ce6ee460f72efd599295f440dbb453 hi-ml-multimodal" in (
        result.stderr
    )
    assert _leftovers(tmp_path / "w") == []


def test_no_network_is_one_line_saying_how_to_place_files(cli, tmp_path, hub):
    result = cli("weights", "fetch", "biovil-t", "--weights", "w")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "cannot download the biovil-t weights (no network" in result.stderr
    assert "place the files by hand under w as `cxrbench weights --weights w` lists them" in result.stderr
    assert _leftovers(tmp_path / "w") == []
    unknown = cli("weights", "fetch", "clip", "--weights", "w")
    assert unknown.returncode == 2 and "unknown weight family clip; choose from ldm, biovil, biovil-t" in unknown.stderr


def _bundle_zip(source, path, leave_out=(), version=LDM_BUNDLE_VERSION):
    """The bundle folder zipped as MONAI's model zoo publishes it (one base folder), with its metadata.json."""
    (source / LDM_BUNDLE / "configs" / "metadata.json").write_text(json.dumps({"version": version}))
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted((source / LDM_BUNDLE).rglob("*")):
            if file.is_file() and file.name not in leave_out:
                archive.write(file, file.relative_to(source).as_posix())
    return path.as_uri()


def test_fetch_ldm_through_monai_bundle_download_and_the_hub_cache(cli, tmp_path, hub):
    for module in ("torch", "monai", "transformers", "safetensors", "generative", "open_clip"):
        require(module)
    from cxrbench.methods.ldm.model import load_ldm
    from cxrbench.testing.ldm import SD, write_tiny_bundle

    source = write_tiny_bundle(tmp_path / "tiny")
    url = _bundle_zip(source, tmp_path / "bundle.zip")
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "unet").mkdir()
    (tmp_path / "extra" / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"not needed")
    publish_folder(hub, "stabilityai/stable-diffusion-2-1-base", source / SD)
    snapshot = publish_folder(hub, "stabilityai/stable-diffusion-2-1-base", tmp_path / "extra", prefix="")
    result = cli("weights", "fetch", "ldm", "--weights", "w", "--bundle-url", url)
    assert result.returncode == 2  # the second publish moved main to a commit without the text encoder
    assert "stabilityai/stable-diffusion-2-1-base at revision main has no text_encoder/config.json" in result.stderr
    assert _leftovers(tmp_path / "w") == []
    (snapshot.parent.parent / "refs" / "main").write_text(
        next(p.name for p in snapshot.parent.iterdir() if p != snapshot)
    )
    result = cli("weights", "fetch", "ldm", "--weights", "w", "--bundle-url", url)
    assert result.returncode == 0, result.stderr
    root = tmp_path / "w"
    assert not (root / SD / "unet").exists()
    pins = _pins(root)
    assert pins[f"{LDM_BUNDLE}/models/autoencoder.pth"] == _sha256(source / LDM_BUNDLE / "models" / "autoencoder.pth")
    assert pins[f"{SD}/tokenizer/merges.txt"] == _sha256(source / SD / "tokenizer" / "merges.txt")
    provenance = json.loads((root / "PROVENANCE.json").read_text())
    assert provenance[f"{LDM_BUNDLE}/models/diffusion_model.pth"]["revision"] == LDM_BUNDLE_VERSION
    assert provenance[f"{LDM_BUNDLE}/models/diffusion_model.pth"]["requested_revision"] is None
    assert provenance[f"{LDM_BUNDLE}/models/diffusion_model.pth"]["source"] == url
    assert all(r["status"] == "ok" for r in status(root) if r["family"] == "ldm")
    models = load_ldm(weights_root(root))
    assert models.hashes[f"{LDM_BUNDLE}/models/diffusion_model.pth"] == pins[f"{LDM_BUNDLE}/models/diffusion_model.pth"]


def test_a_bundle_without_its_checkpoint_places_nothing(cli, tmp_path, hub):
    require("monai")  # monai.bundle.download fetches it
    (tmp_path / "src" / LDM_BUNDLE / "configs").mkdir(parents=True)
    (tmp_path / "src" / LDM_BUNDLE / "configs" / "inference.json").write_text("{}")
    url = _bundle_zip(tmp_path / "src", tmp_path / "bundle.zip")
    result = cli("weights", "fetch", "ldm", "--weights", "w", "--bundle-url", url)
    assert result.returncode == 2
    assert f"the {LDM_BUNDLE} bundle from {url} has no models/autoencoder.pth" in result.stderr
    assert _leftovers(tmp_path / "w") == []


def _light_bundle(tmp_path, version):
    """A bundle folder of `version` with placeholder bytes: fetching copies and hashes them, nothing reads them."""
    source = tmp_path / f"bundle-{version}"
    for name in ("configs/inference.json", "models/autoencoder.pth", "models/diffusion_model.pth"):
        (source / LDM_BUNDLE / name).parent.mkdir(parents=True, exist_ok=True)
        (source / LDM_BUNDLE / name).write_bytes(f"{version} {name}".encode())
    (source / LDM_BUNDLE / "configs" / "metadata.json").write_text(json.dumps({"version": version}))
    return source


def _light_sd(hub):
    """SD-2.1-base's tokenizer and text encoder files in the hub cache, with placeholder bytes."""
    files = {f"text_encoder/{n}": n.encode() for n in ("config.json", "model.safetensors")}
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
        files[f"tokenizer/{name}"] = name.encode()
    write_hub_repo(hub, "stabilityai/stable-diffusion-2-1-base", files)


def test_a_bundle_of_another_version_needs_revision_and_is_recorded_as_such(cli, tmp_path, hub):
    require("monai")  # monai.bundle.download fetches it
    source = _light_bundle(tmp_path, "1.0.0")
    _light_sd(hub)
    url = _bundle_zip(source, tmp_path / "bundle.zip", version="1.0.0")
    refused = cli("weights", "fetch", "ldm", "--weights", "w", "--bundle-url", url)
    error = refused.stderr.splitlines()[-1]  # after MONAI's progress bar
    assert refused.returncode == 2 and error.startswith("error: ")
    assert f"bundle from {url} is version 1.0.0, not {LDM_BUNDLE_VERSION}, the one cxrbench supports" in error
    assert "Pass --revision VERSION" in error and _leftovers(tmp_path / "w") == []
    result = cli("weights", "fetch", "ldm", "--weights", "w", "--bundle-url", url, "--revision", "1.0.0")
    assert result.returncode == 0, result.stderr
    provenance = json.loads((tmp_path / "w" / "PROVENANCE.json").read_text())
    for name in ("configs/inference.json", "models/autoencoder.pth", "models/diffusion_model.pth"):
        record = provenance[f"{LDM_BUNDLE}/{name}"]
        assert (record["revision"], record["requested_revision"]) == ("1.0.0", "1.0.0")
        assert record["pinned_revision"] == LDM_BUNDLE_VERSION
    encoder = provenance["stable-diffusion-2-1-base/text_encoder/model.safetensors"]
    assert encoder["requested_revision"] is None and encoder["pinned_revision"] is None  # SD's main
    wrong = cli("weights", "fetch", "ldm", "--weights", "v", "--bundle-url", url, "--revision", "1.0.1")
    assert wrong.returncode == 2 and "is version 1.0.0, not the 1.0.1 --revision asked for" in wrong.stderr


def test_fetch_ldm_asks_monai_for_the_pinned_bundle_version(tmp_path, hub, monkeypatch):
    """Without --bundle-url, `monai.bundle.download` gets the bundle from its default source, MONAI's Hugging Face
    repo, at the version it is given. Its network call there (`huggingface_hub.snapshot_download(repo_id=
    "MONAI/<bundle>", revision=version, local_dir=...)`) is the one stand-in: it copies the bundle of the revision
    asked for; everything else, MONAI's download included, runs as is."""
    require("monai")
    import huggingface_hub
    from huggingface_hub import constants

    from cxrbench.weights_fetch import fetch

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read on import: set for this process
    bundles = {v: _light_bundle(tmp_path, v) for v in (LDM_BUNDLE_VERSION, "1.0.0")}
    _light_sd(hub)
    asked = []
    real = huggingface_hub.snapshot_download

    def snapshot_download(repo_id, revision=None, local_dir=None, **kwargs):
        if repo_id != f"MONAI/{LDM_BUNDLE}":
            return real(repo_id, revision=revision, local_dir=local_dir, **kwargs)
        asked.append(revision)
        shutil.copytree(bundles[revision] / LDM_BUNDLE, local_dir)
        return str(local_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.delenv("BUNDLE_DOWNLOAD_SRC", raising=False)
    fetch(["ldm"], tmp_path / "w", cache=hub)
    fetch(["ldm"], tmp_path / "v", revision="1.0.0", cache=hub)
    assert asked == [LDM_BUNDLE_VERSION, "1.0.0"]
    # the revision MONAI is asked for by default is the one the hub lookup reads the bundle's files at
    assert {f.revision for f in WEIGHT_FILES if f.path.startswith(f"{LDM_BUNDLE}/")} == {asked[0]}
    for folder, version, requested in (("w", LDM_BUNDLE_VERSION, None), ("v", "1.0.0", "1.0.0")):
        record = json.loads((tmp_path / folder / "PROVENANCE.json").read_text())[f"{LDM_BUNDLE}/models/autoencoder.pth"]
        assert record["source"] == f"MONAI bundle {LDM_BUNDLE}"
        assert (record["revision"], record["pinned_revision"]) == (version, LDM_BUNDLE_VERSION)
        assert record["requested_revision"] == requested
        autoencoder = tmp_path / folder / LDM_BUNDLE / "models" / "autoencoder.pth"
        assert autoencoder.read_bytes() == f"{version} models/autoencoder.pth".encode()
        assert all(r["status"] == "ok" for r in status(tmp_path / folder) if r["family"] == "ldm")


def test_monai_bundle_download_takes_the_arguments_fetch_passes():
    require("monai")
    from monai.bundle import download

    assert {"name", "version", "bundle_dir", "url", "progress"} <= set(inspect.signature(download).parameters)


# RadGraph-XL's BERT as its hub repo holds it (placeholder bytes: fetching copies and hashes them)
BERT_REPO = {
    "config.json": b'{"model_type": "bert"}',
    "vocab.txt": b"[PAD]\n[UNK]\n",
    "tokenizer_config.json": b'{"do_lower_case": true}',
    "special_tokens_map.json": b'{"unk_token": "[UNK]"}',
    "pytorch_model.bin": b"encoder weights: weights.th holds RadGraph-XL's",
    "README.md": b"# BiomedBERT\n",
}


def test_fetch_radgraph_unpacks_the_archive_and_refuses_an_escaping_member(cli, tmp_path, hub):
    members = {  # as radgraph 0.1.18 reads them once unpacked into <cache>/radgraph-xl/
        "config.json": b'{"model": {}}',
        "weights.th": b"state dict bytes",
        "vocabulary/labels.txt": b"ANAT-DP\n",
    }
    write_hub_repo(hub, "StanfordAIMI/RRG_scorers", {"radgraph-xl.tar.gz": tar_gz(members)})
    bert = write_hub_repo(hub, RADGRAPH_BERT, BERT_REPO)
    result = cli("weights", "--weights", "w", "fetch", "radgraph")  # the group's --weights serves fetch too
    assert result.returncode == 0, result.stderr
    root = tmp_path / "w"
    assert (root / "radgraph-xl" / "vocabulary" / "labels.txt").read_bytes() == b"ANAT-DP\n"
    fetched = ("config.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")
    assert _pins(root) == {
        "radgraph-xl/config.json": hashlib.sha256(members["config.json"]).hexdigest(),
        "radgraph-xl/weights.th": hashlib.sha256(members["weights.th"]).hexdigest(),
        **{f"{RADGRAPH_BERT_FOLDER}/{n}": hashlib.sha256(BERT_REPO[n]).hexdigest() for n in fetched},
    }
    assert sorted(p.name for p in (root / RADGRAPH_BERT_FOLDER).iterdir()) == sorted(fetched)  # no weights, README
    provenance = json.loads((root / "PROVENANCE.json").read_text())[f"{RADGRAPH_BERT_FOLDER}/vocab.txt"]
    assert provenance["source"] == f"Hugging Face {RADGRAPH_BERT}" and provenance["revision"] == bert.name
    assert provenance["pinned_revision"] is None  # radgraph pins none: main
    assert all(r["status"] == "ok" for r in status(root) if r["family"] == "radgraph")
    # a changed file is never pinned silently, and an archive member leaving the folder is refused
    other = tmp_path / "hub2"
    write_hub_repo(
        other,
        "StanfordAIMI/RRG_scorers",
        {"radgraph-xl.tar.gz": tar_gz({**members, "weights.th": b"other"})},
    )
    write_hub_repo(other, RADGRAPH_BERT, BERT_REPO)
    changed = cli("weights", "fetch", "radgraph", "--weights", "w", "--hub-cache", str(other))
    assert changed.returncode == 2 and "radgraph-xl/weights.th: the fetched file differs" in changed.stderr
    assert (root / "radgraph-xl" / "weights.th").read_bytes() == b"state dict bytes"
    evil = tmp_path / "hub3"
    write_hub_repo(evil, "StanfordAIMI/RRG_scorers", {"radgraph-xl.tar.gz": tar_gz({"../../escaped": b"x"})})
    refused = cli("weights", "fetch", "radgraph", "--weights", "v", "--hub-cache", str(evil))
    assert refused.returncode == 2 and "cannot unpack" in refused.stderr
    assert not list(tmp_path.rglob("escaped")) and _leftovers(tmp_path / "v") == []


def test_fetch_radgraph_takes_the_bert_files_its_repo_has(cli, tmp_path, hub):
    """tokenizer_config.json and special_tokens_map.json are read only where the repo has them (here, huggingface_hub's
    `.no_exist` markers say it has not); config.json and vocab.txt are needed, and without one nothing is placed."""
    members = {"config.json": b'{"model": {}}', "weights.th": b"state dict bytes", "vocabulary/labels.txt": b"A\n"}
    write_hub_repo(hub, "StanfordAIMI/RRG_scorers", {"radgraph-xl.tar.gz": tar_gz(members)})
    required = {n: BERT_REPO[n] for n in ("config.json", "vocab.txt")}
    write_hub_repo(hub, RADGRAPH_BERT, required, lacks=("tokenizer_config.json", "special_tokens_map.json"))
    result = cli("weights", "fetch", "radgraph", "--weights", "w")
    assert result.returncode == 0, result.stderr
    rows = {r["file"]: r["status"] for r in status(tmp_path / "w") if r["family"] == "radgraph"}
    assert rows[f"{RADGRAPH_BERT_FOLDER}/vocab.txt"] == "ok"
    assert rows[f"{RADGRAPH_BERT_FOLDER}/tokenizer_config.json"].startswith("absent (optional")
    listing = cli("weights", "--weights", "w").stdout
    assert f"{RADGRAPH_BERT_FOLDER}/special_tokens_map.json" in listing
    write_hub_repo(hub, RADGRAPH_BERT, {"config.json": BERT_REPO["config.json"]})  # main moves: no vocab.txt
    missing = cli("weights", "fetch", "radgraph", "--weights", "v")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert f"{RADGRAPH_BERT} at revision main has no vocab.txt; nothing was placed" in missing.stderr
    assert _leftovers(tmp_path / "v") == []


# --- Optional files: absent only where the repo says so; a later fetch drops the ones it did not bring -----------

BERT_OPTIONAL = ("tokenizer_config.json", "special_tokens_map.json")


def _cache_radgraph_archive(hub):
    members = {"config.json": b'{"model": {}}', "weights.th": b"state dict bytes", "vocabulary/labels.txt": b"A\n"}
    write_hub_repo(hub, "StanfordAIMI/RRG_scorers", {"radgraph-xl.tar.gz": tar_gz(members)})


def test_an_offline_snapshot_without_an_optional_file_is_no_proof_the_repo_lacks_it(cli, tmp_path, hub):
    """Offline, `snapshot_download` returns the cached snapshot folder however few files it holds: an optional file
    missing from it is absent only where huggingface_hub's `.no_exist` marker says the repo has none."""
    _cache_radgraph_archive(hub)
    required = {n: BERT_REPO[n] for n in ("config.json", "vocab.txt")}
    write_hub_repo(hub, RADGRAPH_BERT, required)  # e.g. what `AutoConfig` and a vocab lookup left there
    refused = cli("weights", "fetch", "radgraph", "--weights", "w")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert f"{RADGRAPH_BERT} at revision main (commit " in refused.stderr
    assert "the hub cache holds no tokenizer_config.json, and nothing says the repo lacks it" in refused.stderr
    assert "nothing was placed" in refused.stderr and _leftovers(tmp_path / "w") == []
    write_hub_repo(hub, RADGRAPH_BERT, required, lacks=("tokenizer_config.json",))  # one marker: still one to go
    refused = cli("weights", "fetch", "radgraph", "--weights", "w")
    assert refused.returncode == 2 and "holds no special_tokens_map.json, and nothing says" in refused.stderr
    assert _leftovers(tmp_path / "w") == []
    write_hub_repo(hub, RADGRAPH_BERT, required, lacks=BERT_OPTIONAL)
    result = cli("weights", "fetch", "radgraph", "--weights", "w")
    assert result.returncode == 0, result.stderr
    rows = {r["file"]: r["status"] for r in status(tmp_path / "w") if r["family"] == "radgraph"}
    assert all(rows[f"{RADGRAPH_BERT_FOLDER}/{n}"].startswith("absent (optional") for n in BERT_OPTIONAL)


@pytest.fixture
def hub_api(monkeypatch):
    """The hub's API on a local port, answering `repo_info` and the file tree from `.repos` ({repo: (commit,
    files)}), the calls an online `snapshot_download` and `HfApi.list_repo_files` make, whose files the cache
    already holds at that commit (so nothing is downloaded); the tree of a repo in `.tree_down` answers 503."""
    import http.server
    import threading
    from types import SimpleNamespace

    api = SimpleNamespace(repos={}, tree_down=set())
    repos = api.repos

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            path = self.path.split("?")[0].removeprefix("/api/models/")
            repo = next((r for r in repos if path.startswith(f"{r}/")), None)
            if repo is None:
                self.send_error(404)
                return
            commit, files = repos[repo]
            if path.startswith(f"{repo}/tree/") and repo in api.tree_down:
                self.send_error(503)
                return
            if path.startswith(f"{repo}/revision/"):
                body = {"id": repo, "sha": commit, "siblings": [{"rfilename": f} for f in files]}
            else:  # {repo}/tree/{revision}
                body = [{"type": "file", "path": f, "size": 1, "oid": "0" * 40} for f in files]
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    yield api
    server.shutdown()
    server.server_close()


def test_online_the_repos_file_list_says_which_optional_files_it_lacks(cli, tmp_path, hub, hub_api):
    _cache_radgraph_archive(hub)
    archive = next((hub / "models--StanfordAIMI--RRG_scorers" / "snapshots").iterdir())
    hub_api.repos["StanfordAIMI/RRG_scorers"] = (archive.name, ["radgraph-xl.tar.gz"])
    required = {n: BERT_REPO[n] for n in ("config.json", "vocab.txt")}
    bert = write_hub_repo(hub, RADGRAPH_BERT, required)  # no .no_exist markers: the hub's list says it
    hub_api.repos[RADGRAPH_BERT] = (bert.name, [*required, "pytorch_model.bin", "README.md"])
    result = cli("weights", "fetch", "radgraph", "--weights", "w")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "w" / RADGRAPH_BERT_FOLDER).iterdir()) == sorted(required)
    # the file list unavailable (the hub answers 503): no proof the optional files are absent
    hub_api.tree_down.add(RADGRAPH_BERT)
    refused = cli("weights", "fetch", "radgraph", "--weights", "v")
    assert refused.returncode == 2 and "holds no tokenizer_config.json, and nothing says" in refused.stderr
    assert _leftovers(tmp_path / "v") == []


def test_a_fetch_drops_optional_files_and_pins_an_earlier_fetch_left(cli, tmp_path, hub):
    _cache_radgraph_archive(hub)
    write_hub_repo(hub, RADGRAPH_BERT, BERT_REPO)
    assert cli("weights", "fetch", "radgraph", "--weights", "w").returncode == 0
    root = tmp_path / "w"
    assert all((root / RADGRAPH_BERT_FOLDER / n).is_file() for n in BERT_OPTIONAL)
    required = {n: BERT_REPO[n] for n in ("config.json", "vocab.txt")}
    write_hub_repo(hub, RADGRAPH_BERT, required, lacks=BERT_OPTIONAL)  # main moves: the repo dropped them
    result = cli("weights", "fetch", "radgraph", "--weights", "w")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (root / RADGRAPH_BERT_FOLDER).iterdir()) == sorted(required)
    stale = {f"{RADGRAPH_BERT_FOLDER}/{n}" for n in BERT_OPTIONAL}
    assert not stale & set(_pins(root)) and not stale & set(json.loads((root / "PROVENANCE.json").read_text()))
    assert f"{RADGRAPH_BERT_FOLDER}/vocab.txt" in _pins(root) and "radgraph-xl/weights.th" in _pins(root)
    rows = {r["file"]: r["status"] for r in status(root) if r["family"] == "radgraph"}
    assert all(rows[path].startswith("absent (optional") for path in stale)
    assert rows[f"{RADGRAPH_BERT_FOLDER}/config.json"] == "ok"
