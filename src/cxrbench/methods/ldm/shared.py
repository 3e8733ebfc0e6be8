"""Work that configurations of the LDM methods share (docs/ldm.md section 6), kept in the run's shared folder.

- Inversion trajectories: the latents z_i of a recorded window of steps. They depend on the image, the U-Net and
  autoencoder, the dtype, the schedule and the empty prompt's context -- not on layers, tokens, Otsu or a codebook
  (unless it changes the empty prompt, which the key covers) -- so configurations differing only in those reuse them
  and pay only their prompt-conditioned passes. A stored window serves every window inside it.
- Unthresholded attention maps: the per-grid sums and count of a pair's recorded (layer, step) maps (PairMaps),
  keyed by everything above plus the prompt's context, token span, layers and window; configurations differing only
  in `otsu` share them.

Entries are `<kind>-<key>[-<first>-<stop>]-<checksum>.npz` (sha256 of the bytes: a corrupt entry is dropped and
recomputed), written atomically; several processes (Ray workers) may write the same entry, with the same content.
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

from cxrbench.benchmark.store import write_atomic

SCHEMA = 1
_ENTRY = re.compile(
    r"(?P<kind>traj|maps)-(?P<key>[0-9a-f]{64})(?:-(?P<first>\d+)-(?P<stop>\d+))?-(?P<sum>[0-9a-f]{16})"
)


def work_key(**parts: Any) -> str:
    """sha256 of the canonical JSON of `parts` (text, numbers, lists, dicts)."""
    text = json.dumps({"schema": SCHEMA, **parts}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class SharedWork:
    """The folder of shared entries, indexed once when opened."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._trajectories: dict[str, dict[range, Path]] = {}
        self._maps: dict[str, Path] = {}
        self.writable = True
        for path in self.folder.glob("*.npz"):
            match = _ENTRY.fullmatch(path.stem)
            if match is None:
                continue
            if match["kind"] == "traj":
                window = range(int(match["first"]), int(match["stop"]))
                self._trajectories.setdefault(match["key"], {})[window] = path
            else:
                self._maps[match["key"]] = path

    def _read(self, path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray] | None:
        """The entry's arrays (holding at least `names`), or None: gone or unreadable, or corrupt (then deleted)."""
        try:
            data = path.read_bytes()
        except OSError:
            return None
        try:
            if hashlib.sha256(data).hexdigest()[:16] != _ENTRY.fullmatch(path.stem)["sum"]:
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

    def _write(self, stem: str, arrays: dict[str, np.ndarray]) -> Path | None:
        """Store an entry; None when the folder cannot take it (full disk, no permission): then sharing stops for
        this process with one warning, and the work goes on."""
        if not self.writable:
            return None
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        data = buffer.getvalue()
        path = self.folder / f"{stem}-{hashlib.sha256(data).hexdigest()[:16]}.npz"
        try:
            write_atomic(path, data)
        except OSError as exc:  # WriteError included
            self.writable = False
            warnings.warn(f"{exc}; shared work is no longer stored in {self.folder}", stacklevel=3)
            return None
        return path

    def trajectory(self, key: str, steps: range) -> np.ndarray | None:
        """The latents (len(steps), C, H, W) of `steps`, from a stored window holding them all; or None."""
        for window, path in list(self._trajectories.get(key, {}).items()):
            if window.start <= steps.start and steps.stop <= window.stop:
                entry = self._read(path, ("latents",))
                if entry is None or len(entry["latents"]) != len(window):
                    del self._trajectories[key][window]
                    continue
                offset = steps.start - window.start
                return entry["latents"][offset : offset + len(steps)]
        return None

    def put_trajectory(self, key: str, steps: range, latents: np.ndarray) -> None:
        path = self._write(f"traj-{key}-{steps.start}-{steps.stop}", {"latents": np.asarray(latents, np.float32)})
        if path is not None:
            self._trajectories.setdefault(key, {})[steps] = path

    def maps(self, key: str) -> tuple[dict[int, np.ndarray], int] | None:
        """A pair's attention-map sums per grid side and the number of maps summed; or None."""
        path = self._maps.get(key)
        entry = self._read(path, ("count",)) if path is not None else None
        if entry is None:
            self._maps.pop(key, None)
            return None
        count = int(entry.pop("count"))
        return {int(name.removeprefix("side")): grid for name, grid in entry.items()}, count

    def put_maps(self, key: str, sums: dict[int, np.ndarray], count: int) -> None:
        arrays = {f"side{side}": np.asarray(grid, np.float64) for side, grid in sums.items()}
        path = self._write(f"maps-{key}", {**arrays, "count": np.array(count)})
        if path is not None:
            self._maps[key] = path
