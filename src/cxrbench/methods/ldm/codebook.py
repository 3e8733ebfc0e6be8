"""The prompt-tuning codebook (docs/tuning.md section 2): one row per CLIP sub-token of the location terms, the
pathology terms and the specials (<bos>, <eos>, <pad> and the sub-tokens of the " <and> " binder), initialised from
the text encoder's input embeddings. Only location rows train.

A sub-token's kind is the first of special, location, pathology that uses it: "pleural" is both a location
zone and part of "pleural effusion", so its sub-tokens are location rows (a token id has one embedding).
A prompt is embedded through the codebook by replacing the token-embedding lookup of every id that has a
row (a forward hook on the text encoder's input embeddings); all other ids keep the frozen embedding.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxrbench.anatomy.vocabulary import AND, LOCATIONS, PATHOLOGIES
from cxrbench.benchmark.store import write_atomic
from cxrbench.errors import WeightsError

KINDS = ("location", "pathology", "special")  # row order
PRIORITY = ("special", "location", "pathology")  # a sub-token used by several kinds takes the first
FILE = "codebook.safetensors"


@dataclass(frozen=True)
class CodebookRow:
    token_id: int
    token: str
    kind: str
    terms: tuple[str, ...]


def codebook_rows(tokenizer: Any) -> list[CodebookRow]:
    """The rows, locations first, then pathologies, then specials; each group in vocabulary order."""
    uses: dict[int, dict[str, list[str]]] = {}

    def add(ids: list[int], kind: str, term: str) -> None:
        for token_id in ids:
            uses.setdefault(token_id, {k: [] for k in KINDS})[kind].append(term)

    binder = AND.strip()
    add(tokenizer(binder, add_special_tokens=False).input_ids, "special", binder)
    for name in ("bos", "eos", "pad"):
        add([getattr(tokenizer, f"{name}_token_id")], "special", f"<{name}>")
    for kind, terms in (("location", LOCATIONS), ("pathology", [p.lower() for p in PATHOLOGIES])):
        for term in terms:
            add(tokenizer(term, add_special_tokens=False).input_ids, kind, term)
    rows = []
    for kind in KINDS:
        for token_id, used in uses.items():
            if next(k for k in PRIORITY if used[k]) == kind:
                terms = tuple(dict.fromkeys(t for k in KINDS for t in used[k]))
                rows.append(CodebookRow(token_id, tokenizer.convert_ids_to_tokens(token_id), kind, terms))
    return rows


class Codebook:
    """The rows' embeddings: `location` (a torch Parameter, the only trainable tensor) and `fixed` (the rest)."""

    def __init__(self, rows: list[CodebookRow], embeddings: Any):
        import torch

        self.rows = rows
        self.token_ids = torch.tensor([r.token_id for r in rows], dtype=torch.long, device=embeddings.device)
        trains = torch.tensor([r.kind == "location" for r in rows], device=embeddings.device)
        self.location_index = trains.nonzero().flatten()
        self.fixed_index = (~trains).nonzero().flatten()
        self.location = torch.nn.Parameter(embeddings[self.location_index].detach().float().clone())
        self.fixed = embeddings[self.fixed_index].detach().float().clone()

    @classmethod
    def from_text_encoder(cls, tokenizer: Any, text_encoder: Any) -> Codebook:
        rows = codebook_rows(tokenizer)
        weight = text_encoder.get_input_embeddings().weight
        return cls(rows, weight[[r.token_id for r in rows]])

    def table(self) -> Any:
        """(rows, D) embeddings in row order; differentiable in `location`."""
        import torch

        out = torch.empty((len(self.rows), self.fixed.shape[1]), device=self.fixed.device, dtype=torch.float32)
        out = out.index_copy(0, self.fixed_index, self.fixed)
        return out.index_copy(0, self.location_index, self.location)

    def substitute(self, ids: Any, embedded: Any) -> Any:
        """`embedded` (the frozen lookup of `ids`) with every codebook id's row replaced by its codebook row."""
        import torch

        match = ids[..., None] == self.token_ids  # (..., tokens, rows)
        has_row = match.any(dim=-1, keepdim=True)
        rows = self.table()[match.float().argmax(dim=-1)].to(embedded.dtype)
        return torch.where(has_row, rows, embedded)

    @contextlib.contextmanager
    def applied(self, text_encoder: Any) -> Iterator[None]:
        """Within the block, the text encoder embeds token ids through the codebook."""
        layer = text_encoder.get_input_embeddings()
        handle = layer.register_forward_hook(lambda module, args, output: self.substitute(args[0], output))
        try:
            yield
        finally:
            handle.remove()

    def to(self, device: Any) -> Codebook:
        for name in ("token_ids", "location_index", "fixed_index", "fixed"):
            setattr(self, name, getattr(self, name).to(device))
        self.location.data = self.location.data.to(device)
        return self

    def save(self, folder: Path) -> Path:
        """`codebook.safetensors`: embeddings (rows, D) float32 and token_ids; the rows' tokens and kinds in the
        file's metadata."""
        from safetensors.torch import save

        path = folder / FILE
        tensors = {"embeddings": self.table().detach().cpu().contiguous(), "token_ids": self.token_ids.cpu()}
        meta = {"rows": json.dumps([[r.token_id, r.token, r.kind, list(r.terms)] for r in self.rows])}
        write_atomic(path, save(tensors, metadata=meta))
        return path

    @classmethod
    def load(cls, path: Path, tokenizer: Any, text_encoder: Any) -> Codebook:
        """A saved codebook, checked against the rows this tokenizer gives and the text encoder's width."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(path))
            embeddings, token_ids = tensors["embeddings"], tensors["token_ids"].tolist()
        except (OSError, SafetensorError, KeyError) as exc:
            raise WeightsError(f"{path} is not a cxrbench codebook: {exc}") from exc
        rows = codebook_rows(tokenizer)
        if token_ids != [r.token_id for r in rows]:
            raise WeightsError(
                f"{path} was tuned with another tokenizer: its {len(token_ids)} rows are not the {len(rows)} "
                "sub-tokens this tokenizer gives for the location and pathology vocabulary"
            )
        width = text_encoder.get_input_embeddings().weight.shape[1]
        if embeddings.ndim != 2 or embeddings.shape[1] != width:
            raise WeightsError(f"{path} holds {tuple(embeddings.shape)} embeddings; text width is {width}")
        return cls(rows, embeddings.to(text_encoder.get_input_embeddings().weight.device))

    def describe(self) -> list[str]:
        """One line per row, for `cxrbench tune --show-codebook`."""
        table = self.table().detach()
        counts = {k: sum(r.kind == k for r in self.rows) for k in KINDS}
        lines = [
            f"{len(self.rows)} rows x {table.shape[1]}: "
            + ", ".join(f"{counts[k]} {k}" for k in KINDS)
            + " (only location rows train)",
            f"{'row':>4} {'id':>6} {'sub-token':<16} {'kind':<10} {'norm':>7}  terms",
        ]
        for i, row in enumerate(self.rows):
            norm = float(table[i].norm())
            lines.append(f"{i:>4} {row.token_id:>6} {row.token:<16} {row.kind:<10} {norm:7.4f}  {', '.join(row.terms)}")
        return lines
