"""Work that configurations of the LDM methods share (docs/ldm.md section 6), kept in the run's shared folder.

- Inversion trajectories: the latents z_i of a recorded window of steps. They depend on the image, the U-Net and
  autoencoder, the dtype, the schedule and the empty prompt's context -- not on layers, tokens, Otsu or a codebook
  (unless it changes the empty prompt, which the key covers) -- so configurations differing only in those reuse them
  and pay only their prompt-conditioned passes. A stored window serves every window inside it.
- Unthresholded attention maps: the per-grid sums and count of a pair's recorded (layer, step) maps (PairMaps),
  keyed by everything above plus the prompt's context, token span, layers and window; configurations differing only
  in `otsu` share them.

Each key has its own folder, `<key>/traj-<first>-<stop>-<checksum>.npz` or `<key>/maps-<checksum>.npz` (checksum:
sha256 of the bytes; a corrupt entry is dropped and recomputed), written atomically. A lookup lists only its key's
folder, so an entry another process (a Ray worker, a concurrent configuration) wrote a moment ago is found as
readily as one of this process; several processes may write the same entry, with the same content.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from cxrbench.benchmark.store import WriteError, write_atomic

SCHEMA = 2  # part of every key: bump it when a change alters what an entry holds
_ENTRY = re.compile(r"(?P<kind>traj|maps)(?:-(?P<first>\d+)-(?P<stop>\d+))?-(?P<sum>[0-9a-f]{16})")


def work_key(**parts: Any) -> str:
    """sha256 of the canonical JSON of `parts` (text, numbers, lists, dicts)."""
    text = json.dumps({"schema": SCHEMA, **parts}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class SharedWork:
    """The folder of shared entries, one sub-folder per key."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.writable = True

    def _entries(self, key: str, kind: str) -> list[tuple[re.Match[str], Path]]:
        """The key's stored entries of `kind`, as (name match, path); none when its folder does not exist."""
        try:
            paths = list((self.folder / key).iterdir())
        except OSError:
            return []
        found = [(_ENTRY.fullmatch(p.stem), p) for p in paths if p.suffix == ".npz"]
        return [(m, p) for m, p in found if m is not None and m["kind"] == kind]

    def _read(self, match: re.Match[str], path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray] | None:
        """The entry's arrays (holding at least `names`), or None: gone or unreadable, or corrupt (then deleted)."""
        try:
            data = path.read_bytes()
        except OSError:
            return None
        try:
            if hashlib.sha256(data).hexdigest()[:16] != match["sum"]:
                raise ValueError("checksum mismatch")
            with np.load(io.BytesIO(data), allow_pickle=False) as entry:
                arrays = {name: entry[name] for name in entry.files}
            if not set(names) <= set(arrays):
                raise ValueError("missing arrays")
        except (OSError, ValueError, KeyError, EOFError):
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
            return None
        return arrays

    def _write(self, key: str, stem: str, arrays: dict[str, np.ndarray]) -> None:
        """Store an entry in the key's folder. Where the folder cannot take it (full disk, no permission), sharing
        stops for this process with one warning, and the work goes on."""
        if not self.writable:
            return
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        data = buffer.getvalue()
        path = self.folder / key / f"{stem}-{hashlib.sha256(data).hexdigest()[:16]}.npz"
        try:
            path.parent.mkdir(exist_ok=True)
            write_atomic(path, data)
        except OSError as exc:
            self.writable = False
            reason = exc if isinstance(exc, WriteError) else f"cannot write {path} ({exc.strerror or exc})"
            warnings.warn(f"{reason}; shared work is no longer stored in {self.folder}", stacklevel=3)

    def trajectory(self, key: str, steps: range) -> np.ndarray | None:
        """The latents (len(steps), C, H, W) of `steps`, from a stored window holding them all; or None."""
        for match, path in self._entries(key, "traj"):
            window = range(int(match["first"]), int(match["stop"]))
            if window.start <= steps.start and steps.stop <= window.stop:
                entry = self._read(match, path, ("latents",))
                if entry is None or len(entry["latents"]) != len(window):
                    continue
                offset = steps.start - window.start
                return entry["latents"][offset : offset + len(steps)]
        return None

    def put_trajectory(self, key: str, steps: range, latents: np.ndarray) -> None:
        self._write(key, f"traj-{steps.start}-{steps.stop}", {"latents": np.asarray(latents, np.float32)})

    def maps(self, key: str) -> tuple[dict[int, np.ndarray], int] | None:
        """A pair's attention-map sums per grid side and the number of maps summed; or None."""
        for match, path in self._entries(key, "maps"):
            entry = self._read(match, path, ("count",))
            if entry is not None:
                count = int(entry.pop("count"))
                return {int(name.removeprefix("side")): grid for name, grid in entry.items()}, count
        return None

    def put_maps(self, key: str, sums: dict[int, np.ndarray], count: int) -> None:
        arrays = {f"side{side}": np.asarray(grid, np.float64) for side, grid in sums.items()}
        self._write(key, "maps", {**arrays, "count": np.array(count)})
