"""A Hugging Face hub cache in the layout huggingface_hub writes (docs/weights.md): `models--<org>--<name>/`
with `blobs/` (a Git LFS file named by its sha256, any other file by its git blob sha1), `snapshots/<commit>/`
holding relative links to the blobs, `refs/<revision>` holding the commit hash, and `.no_exist/<commit>/<path>`
marking a file the repo has not at that commit."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Mapping
from pathlib import Path

# Suffixes the hub's default .gitattributes stores in Git LFS
LFS_SUFFIXES = (".bin", ".pt", ".pth", ".th", ".safetensors", ".gz", ".zip")


def blob_name(path: str, content: bytes) -> str:
    """What the hub names the blob: sha256 of an LFS file, else git's object id, sha1("blob <size>\\0" + bytes)."""
    if path.endswith(LFS_SUFFIXES):
        return hashlib.sha256(content).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def write_hub_repo(
    cache: Path,
    repo: str,
    files: Mapping[str, bytes],
    revisions: tuple[str, ...] = ("main",),
    commit: str = "",
    lacks: tuple[str, ...] = (),
) -> Path:
    """Cache `files` ({path in the repo: bytes}) of model repo `repo` at one commit, every name in `revisions`
    pointing at it, and the paths in `lacks` as files the repo has not at that commit: the empty
    `.no_exist/<commit>/<path>` marker huggingface_hub's download writes when the hub answers that a file does not
    exist (`file_download._hf_hub_download_to_cache_dir`). The snapshot folder is returned."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    commit = commit or hashlib.sha1(repr(sorted(files.items())).encode()).hexdigest()
    snapshot = folder / "snapshots" / commit
    (folder / "blobs").mkdir(parents=True, exist_ok=True)
    for path, content in files.items():
        blob = folder / "blobs" / blob_name(path, content)
        blob.write_bytes(content)
        link = snapshot / path
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():  # the same commit cached again (e.g. with markers added): its links stand
            link.symlink_to(os.path.relpath(blob, link.parent))
    for path in lacks:
        marker = folder / ".no_exist" / commit / path
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    (folder / "refs").mkdir(exist_ok=True)
    for revision in revisions:
        (folder / "refs" / revision).write_text(commit, encoding="utf-8")
    return snapshot


def publish_folder(cache: Path, repo: str, folder: Path, prefix: str = "", **kwargs) -> Path:
    """Cache every file under `folder` as repo `repo`, at `prefix` + its path relative to `folder`."""
    files = {
        prefix + p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }
    return write_hub_repo(cache, repo, files, **kwargs)


def tar_gz(members: Mapping[str, bytes]) -> bytes:
    """A gzipped tar archive of `members` ({member name: bytes}), as RadGraph's `radgraph-xl.tar.gz` is published."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def tiny_bert_files() -> dict[str, bytes]:
    """A tiny BERT as a Hugging Face repo holds it ({path in the repo: bytes}), written by transformers itself
    (`save_pretrained`): config.json, vocab.txt, tokenizer_config.json, special_tokens_map.json and the model's
    weights (model.safetensors). Needs torch and transformers."""
    import tempfile

    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    # "a" and "b": allennlp's tokenizer (in the radgraph package) finds the special tokens by encoding them
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "left", "lower", "lobe", "opacity", ".", "a", "b"]
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
        BertTokenizer(str(Path(folder) / "vocab.txt"), do_lower_case=True).save_pretrained(folder)
        config = BertConfig(
            vocab_size=len(words), hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16
        )
        torch.manual_seed(0)
        BertModel(config).save_pretrained(folder)
        return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.is_file()}
