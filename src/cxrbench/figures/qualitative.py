"""The qualitative figure of grounding papers (docs/figures.md): one row per pair (the radiograph in grey with its
ground-truth boxes, the prompt as the row title), one column per stored run (its heatmap over the image, one
shared colour scale and colour bar, the pair's stored scores in the panel's corner).

Heatmaps are read from each run's heatmap cache with the key the runner used (`cache.cache_key` of the run's
method name and stored method config); a pair that is not cached is recomputed for the chosen pairs only, by
the method rebuilt from the run's stored options (refused when its config differs from the run's). A map is
brought into the image frame as the scorer does (docs/protocol.md section 2: square maps resized to min(H, W)
and centred, NaN outside) and min-max normalised over its valid pixels, so every panel shares the scale [0, 1].
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cxrbench.benchmark import store
from cxrbench.benchmark.cache import HeatmapCache, sample_cache_key
from cxrbench.benchmark.compare import METRICS, read_scores
from cxrbench.benchmark.protocol import check_heatmap, full_frame, to_image_frame
from cxrbench.benchmark.summary import RunSummary
from cxrbench.errors import CxrbenchError
from cxrbench.leaderboard.tables import METRIC_STYLE
from cxrbench.types import Sample

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SHOWN_METRICS = ("cnr", "miou")
CMAPS = ("viridis", "magma", "cividis", "inferno", "plasma")  # perceptually uniform (matplotlib's own)
BOX_COLOUR = "#ff2a2a"
HEATMAP_ALPHA = 0.6
ROW_FONTSIZE, COLUMN_FONTSIZE = 8, 9
TITLE_ROOM = 0.92  # of a panel's side: titles are shortened to fit it, with a margin for the backends' metrics
ELLIPSIS = "\u2026"


@dataclass(frozen=True)
class Row:
    """One figure row: the sample, its image, and per run (in column order) the image-frame map and scores."""

    sample: Sample
    image: np.ndarray
    heatmaps: tuple[np.ndarray, ...]
    scores: tuple[dict[str, float], ...]


# ---- choosing pairs ----------------------------------------------------------------------------------------------


def scored_pairs(scores: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The first run's score rows of the pairs every run scored, in its scores.csv order."""
    common = set.intersection(*(set(frame["pair_id"]) for frame in scores))
    return scores[0][scores[0]["pair_id"].isin(common)]


def select_pairs(
    scores: Sequence[pd.DataFrame],
    *,
    pairs: Sequence[str] | None = None,
    best: int | None = None,
    worst: int | None = None,
    random: int | None = None,
    seed: int = 0,
    metric: str = "cnr",
    class_name: str | None = None,
) -> list[str]:
    """Pair ids for a figure, from the runs' score frames (scores.csv, first run first); exactly one way:

    `pairs` as given (each must be scored by every run); `best`/`worst` N: the highest/lowest `metric` of the
    first run (ties by pair id, NaN left out); `random` N: drawn without replacement by
    `np.random.default_rng(seed)` from the pairs in the first run's order. Only pairs scored by every run, of
    `class_name` when given, are chosen; fewer than N when fewer exist.
    """
    ways = {"pairs": pairs, "best": best, "worst": worst, "random": random}
    given = [k for k, v in ways.items() if v is not None]
    if len(given) != 1:
        raise CxrbenchError("choose the pairs one way: --pairs ID,ID, --best N, --worst N or --random N")
    if pairs is not None:
        return _named_pairs(scores, list(pairs))
    n = int(ways[given[0]])  # type: ignore[arg-type]
    if n < 1:
        raise CxrbenchError(f"--{given[0]} must be a positive number of pairs, not {n}")
    if metric not in METRICS or metric not in scores[0].columns:
        raise CxrbenchError(f"unknown metric {metric!r} to rank pairs by; choose from {', '.join(METRICS)}")
    candidates = scored_pairs(scores)
    if class_name is not None:
        candidates = candidates[candidates["class_name"] == class_name]
    if random is not None:
        ids = candidates["pair_id"].tolist()
        chosen = np.random.default_rng(seed).choice(len(ids), size=min(n, len(ids)), replace=False)
        return [ids[i] for i in chosen]
    ranked = candidates.dropna(subset=[metric]).sort_values(
        [metric, "pair_id"], ascending=[worst is not None, True], kind="stable"
    )
    return ranked["pair_id"].head(n).tolist()


def _named_pairs(scores: Sequence[pd.DataFrame], pairs: list[str]) -> list[str]:
    if not pairs:
        raise CxrbenchError("--pairs names no pair")
    known = set(scored_pairs(scores)["pair_id"])
    missing = [p for p in pairs if p not in known]
    if missing:
        raise CxrbenchError(
            f"pair(s) {', '.join(missing)} not scored by every chosen run; pick ids from the runs' scores.csv"
        )
    return pairs


# ---- heatmaps in the image frame ---------------------------------------------------------------------------------


def image_frame(heatmap: np.ndarray, sample: Sample, frame: str, interpolation: str) -> np.ndarray:
    """A stored map in the image frame as the scorer builds it (docs/protocol.md section 2), min-max normalised
    over its valid pixels (the cxrbench protocol's step, applied for display under either protocol)."""
    h, w = sample.height, sample.width
    if frame == "full" or (frame == "auto" and heatmap.shape == (h, w)):
        return full_frame(heatmap, h, w, protocol="cxrbench")
    return to_image_frame(heatmap, h, w, interpolation, protocol="cxrbench")  # type: ignore[arg-type]


def _cache(run: RunSummary) -> HeatmapCache | None:
    """The run's method cache (read as the runner wrote it), or None when the run cached nothing: beside the run
    folder where it really lies (a run folder linked in from elsewhere), else beside the link."""
    if run.path is None or not run.settings.get("cached"):
        return None
    folder = run.path.parent
    for datasets in dict.fromkeys((folder.resolve().parent, folder.parent)):
        if (datasets / store.HEATMAPS / run.method).is_dir():
            return HeatmapCache(datasets / store.HEATMAPS / run.method)
    return None


def raw_heatmaps(run: RunSummary, samples: Sequence[Sample], device: str | None = None) -> list[np.ndarray]:
    """The run's maps of `samples` as the method returned them: cached, else recomputed (module docstring)."""
    if run.output == "boxes":
        raise CxrbenchError(f"run '{run.name}' predicts boxes, not heatmaps; a qualitative figure shows heatmaps")
    cache = _cache(run)
    found: dict[str, np.ndarray] = {}
    if cache is not None:
        config, classes = run.identity.method_config, run.settings.get("uses_class_names", False)
        for s in samples:
            heatmap = cache.get(sample_cache_key(run.method, config, s, classes))
            if heatmap is not None:
                found[s.pair_id] = heatmap
    missing = [s for s in samples if s.pair_id not in found]
    if missing:
        found.update(_recompute(run, missing, cache, device))
    return [found[s.pair_id] for s in samples]


def _recompute(
    run: RunSummary, samples: list[Sample], cache: HeatmapCache | None, device: str | None
) -> dict[str, np.ndarray]:
    """Rebuild the run's method from its stored options, call it on `samples` as the runner does (capability,
    batches, output check) and cache the maps when the run cached."""
    from cxrbench.benchmark.executors import PairError, call_method, load_image
    from cxrbench.benchmark.summary import method_config
    from cxrbench.capabilities import describe
    from cxrbench.registry import load_method

    options = dict(run.settings.get("options", {}).get("method", {}))
    if device is not None:
        options["device"] = device
    method = load_method(run.method, **options)
    spec, config, stored = describe(method), method_config(method), run.identity.method_config
    differs = sorted(k for k in {*config, *stored} if config.get(k) != stored.get(k))
    if differs:
        raise CxrbenchError(
            f"run '{run.name}': the method '{run.method}' built now differs from the run's in "
            f"{', '.join(f'method_config.{k}' for k in differs)}, and pair {samples[0].pair_id} is not cached; "
            f"rerun the run, or restore what changed"
        )
    out: dict[str, np.ndarray] = {}
    for start in range(0, len(samples), spec.batch_size):
        batch = samples[start : start + spec.batch_size]
        try:
            images = [load_image(s) if spec.needs_image else None for s in batch]
            maps = call_method(method, spec, batch, images)
        except PairError as err:
            raise CxrbenchError(f"run '{run.name}', pair {batch[0].pair_id}, {err.stage}: {err.error}") from err
        for sample, heatmap in zip(batch, maps, strict=True):
            heatmap = check_heatmap(heatmap, f"heatmap of method '{run.method}' for pair {sample.pair_id}")
            if cache is not None and spec.cacheable:
                cache.put(sample_cache_key(run.method, stored, sample, spec.class_names), heatmap)
            out[sample.pair_id] = heatmap
    return out


# ---- the figure --------------------------------------------------------------------------------------------------


def _by_id(samples: Iterable[Sample] | Mapping[str, Sample]) -> Mapping[str, Sample]:
    return samples if isinstance(samples, Mapping) else {s.pair_id: s for s in samples}


def build_rows(
    runs: Sequence[RunSummary],
    samples: Iterable[Sample] | Mapping[str, Sample],
    pair_ids: Sequence[str],
    metrics: Sequence[str] = SHOWN_METRICS,
    device: str | None = None,
    scores: Sequence[pd.DataFrame] | None = None,
) -> list[Row]:
    """The rows of a figure: each pair's sample, image, and per run its image-frame map and stored scores."""
    if not runs:
        raise CxrbenchError("a qualitative figure needs at least one run; name them with --methods")
    by_id = _by_id(samples)
    unknown = [p for p in pair_ids if p not in by_id]
    if unknown:
        raise CxrbenchError(f"pair(s) {', '.join(unknown)} not in the dataset '{runs[0].dataset}'")
    scores = scores or [read_scores(run, metrics) for run in runs]
    _named_pairs(scores, list(pair_ids))
    chosen = [by_id[p] for p in pair_ids]
    tables = [frame.set_index("pair_id") for frame in scores]
    for run, table in zip(runs, tables, strict=True):
        for s in chosen:
            stored = table.loc[s.pair_id, "prompt"] if "prompt" in table.columns else s.prompt
            if stored != s.prompt:
                raise CxrbenchError(
                    f"run '{run.name}' scored pair {s.pair_id} with the prompt {stored!r}; the dataset now gives "
                    f"{s.prompt!r}: open the dataset the run used (--data-root, -O)"
                )
    chosen = [_loaded(s) for s in chosen]
    maps = []
    for run in runs:
        raw = raw_heatmaps(run, chosen, device)
        frame, interpolation = run.settings.get("frame", "square"), run.settings.get("interpolation", "bilinear")
        maps.append([image_frame(m, s, frame, interpolation) for m, s in zip(raw, chosen, strict=True)])
    return [
        Row(
            sample=s,
            image=s.image.load(),
            heatmaps=tuple(m[i] for m in maps),
            scores=tuple({k: float(t.loc[s.pair_id, k]) for k in metrics} for t in tables),
        )
        for i, s in enumerate(chosen)
    ]


def _loaded(sample: Sample) -> Sample:
    """The sample with its image read once (checked against its size), for the method and the figure alike."""
    image = sample.load_image()
    return replace(sample, image=replace(sample.image, load=lambda: image))


def _thinned(array: np.ndarray, max_side: int | None) -> np.ndarray:
    """Every k-th row and column, k the smallest stride that brings the longer side to at most `max_side`
    (drawn over the same extent, so positions are unchanged)."""
    if max_side is None:
        return array
    stride = max(1, -(-max(array.shape) // max_side))
    return array[::stride, ::stride]


def score_text(scores: Mapping[str, float]) -> str:
    """The corner text: one line per metric in the tables' scale and decimals (mIoU in percent)."""
    lines = []
    for metric, value in scores.items():
        label, scale, decimals = METRIC_STYLE[metric]
        shown = "--" if math.isnan(value) else f"{value * scale:.{decimals}f}"
        lines.append(f"{label.replace(' (%)', '')} {shown}")
    return "\n".join(lines)


def text_width(text: str, fontsize: float) -> float:
    """The width in points of one line of `text` as matplotlib draws it in its default font."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    width, _, _ = TextToPath().get_text_width_height_descent(text, FontProperties(size=fontsize), ismath=False)
    return float(width)


def _cut(text: str, keep: int) -> str:
    head = keep // 3
    return f"{text[:head]}{ELLIPSIS}{text[len(text) - keep + head :]}"


def shorten_middle(text: str, fits: Callable[[str], bool]) -> str:
    """`text` when it fits, else the longest cut that does (a binary search on the characters kept): its first
    third and last two thirds around an ellipsis, keeping the distinctive end of an id (an MS-CXR
    `<dicom id>:<hash>` keeps its hash)."""
    if fits(text):
        return text
    low, high = 0, len(text) - 1  # _cut(text, low) fits (the ellipsis alone is taken as fitting)
    while low < high:
        middle = (low + high + 1) // 2
        if fits(_cut(text, middle)):
            low = middle
        else:
            high = middle - 1
    return _cut(text, low)


def row_title(prompt: str, pair_id: str, width: float, fontsize: float = ROW_FONTSIZE) -> str:
    """The prompt wrapped (at 28 characters, fewer where a line would be wider than `width` points) above the
    pair id in brackets, shortened in the middle to that width (shorten_middle)."""

    def fits(line: str) -> bool:
        return text_width(line, fontsize) <= width

    lines: list[str] = []
    for columns in range(28, 0, -1):
        lines = textwrap.wrap(prompt, columns)
        if all(fits(line) for line in lines):
            break
    shown = shorten_middle(pair_id, lambda short: fits(f"[{short}]"))
    return "\n".join([*lines, f"[{shown}]"])


def _layout(n_rows: int, n_cols: int, panel: float, title_lines: int) -> tuple[Figure, np.ndarray, Any]:
    """A figure of n_rows x n_cols square panels of `panel` inches, fixed margins (room for row titles of
    `title_lines` lines on the left, column titles on top) and a colour bar axes on the right. A fixed layout
    draws once (a constrained layout draws twice and costs more than the panels on a gallery of many figures)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    gap, left, top, bottom, right = 0.08, 0.3 + 0.14 * title_lines, 0.3, 0.08, 0.75
    width = left + n_cols * panel + (n_cols - 1) * gap + right
    height = top + n_rows * panel + (n_rows - 1) * gap + bottom
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(
        n_rows, n_cols, left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height,
        wspace=gap / panel, hspace=gap / panel,
    )  # fmt: skip
    axes = grid.subplots(squeeze=False)
    bar_height = min(height - top - bottom, 2.5 * panel)
    bar = fig.add_axes(
        ((width - right + 0.12) / width, (height - top - bar_height) / height, 0.12 / width, bar_height / height),
        label="<colorbar>",
    )
    return fig, axes, bar


def draw(
    rows: Sequence[Row],
    columns: Sequence[str],
    cmap: str = "viridis",
    panel: float = 2.2,
    max_side: int | None = None,
) -> Figure:
    """The figure of `rows` with one heatmap column per name in `columns` (matplotlib, no pyplot state); with
    `max_side`, image and maps are thinned to at most that many pixels a side (previews: faster, smaller)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle

    if cmap not in CMAPS:
        raise CxrbenchError(f"colour map {cmap!r} is not one of the perceptually uniform {', '.join(CMAPS)}")
    if not rows:
        raise CxrbenchError("no pair to draw")
    norm = Normalize(vmin=0.0, vmax=1.0)
    room = panel * 72 * TITLE_ROOM  # a title's width in points, along the panel's side
    titles = [row_title(row.sample.prompt, row.sample.pair_id, room) for row in rows]
    heads = [shorten_middle(name, lambda short: text_width(short, COLUMN_FONTSIZE) <= room) for name in columns]
    fig, axes, bar_axes = _layout(len(rows), len(columns) + 1, panel, max(t.count("\n") + 1 for t in titles))
    for r, row in enumerate(rows):
        s = row.sample
        extent = (0, s.width, s.height, 0)  # pixel j spans [j, j + 1): boxes drawn at their own coordinates
        for c, ax in enumerate(axes[r]):
            ax.imshow(
                _thinned(row.image, max_side),
                cmap="gray",
                vmin=0.0,
                vmax=1.0,
                extent=extent,
                interpolation="antialiased",
            )
            if c > 0:
                heat = np.ma.masked_invalid(_thinned(row.heatmaps[c - 1], max_side))
                ax.imshow(heat, cmap=cmap, norm=norm, alpha=HEATMAP_ALPHA, extent=extent, interpolation="antialiased")
                ax.text(
                    0.03, 0.97, score_text(row.scores[c - 1]), transform=ax.transAxes, ha="left", va="top",
                    fontsize=7, color="white", parse_math=False, gid="score",
                    bbox={"facecolor": "black", "alpha": 0.6, "edgecolor": "none", "pad": 1.5},
                )  # fmt: skip
            for box in s.boxes:
                ax.add_patch(
                    Rectangle(
                        (box.x_min, box.y_min), box.x_max - box.x_min, box.y_max - box.y_min,
                        fill=False, edgecolor=BOX_COLOUR, linewidth=1.4 if c == 0 else 0.8, gid="gt-box",
                    )
                )  # fmt: skip
            ax.set_xlim(0, s.width)
            ax.set_ylim(s.height, 0)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("image, boxes" if c == 0 else heads[c - 1], fontsize=COLUMN_FONTSIZE, parse_math=False)
        axes[r][0].set_ylabel(titles[r], fontsize=ROW_FONTSIZE, parse_math=False)
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=bar_axes)
    bar.set_label("heatmap, min-max normalised", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    return fig


def qualitative_figure(
    runs: Sequence[RunSummary],
    samples: Iterable[Sample] | Mapping[str, Sample],
    pair_ids: Sequence[str],
    *,
    metrics: Sequence[str] = SHOWN_METRICS,
    cmap: str = "viridis",
    device: str | None = None,
) -> Figure:
    """The qualitative figure of `pair_ids` (rows) for stored `runs` (columns, by run name), with the samples of
    the dataset the runs scored (a Dataset, or a pair id -> Sample mapping); see the module docstring."""
    rows = build_rows(runs, samples, pair_ids, metrics, device)
    return draw(rows, [r.name for r in runs], cmap)


def find_runs_named(runs_dir: str | os.PathLike[str], dataset: str, names: Sequence[str]) -> list[RunSummary]:
    """The stored runs of `dataset` with these names under `runs_dir`, in this order."""
    from cxrbench.benchmark.compare import select_runs

    return select_runs(store.find_runs(runs_dir).runs, dataset, list(names))


def open_run_dataset(run: RunSummary, data_root: str | None = None, options: dict[str, Any] | None = None) -> Any:
    """The dataset `run` scored: `data_root` and `options` when given, else the ones stored with the run."""
    from cxrbench.registry import load_dataset

    root = data_root if data_root is not None else run.settings.get("data_root")
    stored = run.settings.get("options", {}).get("dataset", {})
    return load_dataset(run.dataset, data_root=root, **(options if options else stored))
