"""Run one method on one dataset: stream samples -> method -> heatmap cache -> protocol -> metrics -> summary.

Images are decoded in a small background thread pool a few pairs ahead of the method. Every heatmap is cached
as soon as it is computed, so an interrupted run (crash, Ctrl-C, SIGKILL) resumes without recomputing any
cached pair; scores are recomputed from the cache, which is cheap and keeps them identical.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cxrbench.benchmark import store
from cxrbench.benchmark.aggregate import AVERAGE, summarise
from cxrbench.benchmark.bootstrap import MAX_RESAMPLES, MIN_RESAMPLES
from cxrbench.benchmark.cache import HeatmapCache, RunLock, cache_key
from cxrbench.benchmark.metrics import IOU_THRESHOLDS, score_boxes, score_pair
from cxrbench.benchmark.protocol import (
    PROTOCOLS,
    SCORER_VERSION,
    ScoringProtocol,
    check_heatmap,
    full_frame,
)
from cxrbench.benchmark.strata import box_fraction, box_side
from cxrbench.benchmark.summary import RunIdentity, RunSummary, SummaryError
from cxrbench.benchmark.weighted import score_square
from cxrbench.capabilities import MethodSpec, describe
from cxrbench.errors import CxrbenchError, DataError, MethodFailedError, RunConflictError
from cxrbench.registry import load_dataset, load_method
from cxrbench.types import Sample

OnError = Literal["fail", "skip"]
METRICS = ("cnr", "cnr_signed", "miou", "auc", "auc_binned")
IOU_COLUMNS = tuple(f"iou_{t:g}" for t in IOU_THRESHOLDS)
SCORE_COLUMNS = (
    "pair_id",
    "image_id",
    "class_name",
    "prompt",
    *METRICS,
    *IOU_COLUMNS,
    "n_boxes",
    "box_fraction",
    "box_side",
    "cnr_undefined",
    "no_prediction",
)
ERROR_COLUMNS = ("pair_id", "image_id", "class_name", "stage", "error")
_PREFETCH = 4


@dataclass
class RunResult:
    """What a run produced: its folder, one score row per pair, the error rows and the summary."""

    run_dir: Path
    scores: pd.DataFrame
    errors: pd.DataFrame
    summary: RunSummary


@dataclass
class _Timer:
    seconds: dict[str, float] = field(default_factory=lambda: {"load": 0.0, "method": 0.0, "score": 0.0})

    def add(self, stage: str, start: float) -> None:
        self.seconds[stage] += time.perf_counter() - start


class _PairError(Exception):
    """One pair failed at one stage; handled per --on-error."""

    def __init__(self, stage: str, error: Exception):
        super().__init__(str(error))
        self.stage = stage
        self.error = error


def _json_values(config: Any, what: str) -> dict[str, Any]:
    """`config` as JSON values (paths become text); anything else is an error naming the key, before any work."""

    def default(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, np.generic):
            return value.item()
        raise TypeError(type(value).__name__)

    if not isinstance(config, dict):
        raise CxrbenchError(f"{what} must be a dict of JSON values, not {type(config).__name__}")
    for key, value in config.items():
        try:
            json.dumps(value, default=default, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise CxrbenchError(f"{what}: key {key!r} is not a JSON value ({exc}); return text or numbers") from exc
    return json.loads(json.dumps(config, default=default))


def _method_config(method: Any) -> dict[str, Any]:
    config = _json_values(method.config() if hasattr(method, "config") else {}, f"method {method.name!r} config()")
    return {"class": f"{type(method).__module__}.{type(method).__qualname__}", **config}


def _dataset_manifest(samples: Sequence[Sample]) -> str:
    """sha256 over every pair's annotation (id, class, prompt, size, boxes) and image content hash, in order."""
    digest = hashlib.sha256()
    for s in samples:
        try:
            image = "unreadable" if s.error else s.image.fingerprint()
        except DataError as exc:
            image = f"unreadable: {exc}"
        record = [
            s.pair_id,
            s.image_id,
            s.class_name,
            s.prompt,
            s.height,
            s.width,
            [b.as_tuple() for b in s.boxes],
            image,
            s.error,
        ]
        digest.update(json.dumps(record).encode("utf-8"))
    return digest.hexdigest()


def _image_records(samples: Sequence[Sample]) -> pd.DataFrame:
    """One row per image: its source and how its pixels were decoded (DICOM provenance)."""
    rows = {
        s.image_id: {"image_id": s.image_id, "source": s.image.description, **s.image.provenance}
        for s in samples
        if s.error is None
    }
    return pd.DataFrame(list(rows.values()))


def _torch_record() -> dict[str, Any] | None:
    """torch, CUDA and cuDNN versions, devices and numerics flags, when a method imported torch."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    cuda = torch.cuda.is_available()
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else ["cpu"],
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }


def _check_samples(samples: Sequence[Sample]) -> None:
    seen: set[str] = set()
    for s in samples:
        if s.pair_id in seen:
            raise DataError(f"dataset yields pair id {s.pair_id!r} twice; pair ids must be unique")
        seen.add(s.pair_id)


def _prefetch(samples: Sequence[Sample], pool: ThreadPoolExecutor) -> Iterator[tuple[Sample, Future]]:
    """Yield (sample, future image) with at most _PREFETCH images decoded ahead."""
    pending: deque[tuple[Sample, Future]] = deque()
    queue = iter(samples)
    for sample in islice(queue, _PREFETCH):
        pending.append((sample, pool.submit(sample.load_image)))
    while pending:
        yield pending.popleft()
        for sample in islice(queue, 1):
            pending.append((sample, pool.submit(sample.load_image)))


class _Engine:
    """Computes, caches and scores heatmaps for one (method, dataset) run."""

    def __init__(self, method: Any, spec: MethodSpec, timer: _Timer, protocol: ScoringProtocol):
        self.method = method
        self.spec = spec
        self.name = spec.name
        self.cache: HeatmapCache | None = None
        self.timer = timer
        self.protocol = protocol
        self.config = _method_config(method)
        self.computed = 0
        self.from_cache = 0

    def key(self, sample: Sample) -> str | None:
        """The sample's cache key; None without a cache (or when its image cannot be read: loading will say why)."""
        if self.cache is None:
            return None
        try:
            fingerprint = sample.image.fingerprint()
        except DataError:
            return None
        return cache_key(self.name, self.config, sample.pair_id, sample.prompt, fingerprint)

    def _call(self, samples: list[Sample], images: list[np.ndarray | None]) -> list[np.ndarray]:
        start = time.perf_counter()
        try:
            capability = self.spec.capability
            if capability == "boxes":
                maps = [self.method.boxes_for_sample(s) for s in samples]
            elif capability == "sample":
                maps = [self.method.heatmap_for_sample(s) for s in samples]
            elif capability == "batched":
                maps = list(self.method.heatmaps(images, [s.prompt for s in samples]))
            else:
                maps = [self.method.heatmap(images[0], samples[0].prompt)]
        except CxrbenchError as exc:
            raise _PairError("method", exc) from exc
        except Exception as exc:
            message = f"method '{self.name}' raised {type(exc).__name__}: {exc}"
            raise _PairError("method", MethodFailedError(message)) from exc
        finally:
            self.timer.add("method", start)
        if len(maps) != len(samples):
            raise _PairError(
                "method",
                MethodFailedError(f"method '{self.name}' returned {len(maps)} heatmaps for {len(samples)} images"),
            )
        return maps

    def heatmaps(self, batch: list[tuple[Sample, Future | None]]) -> Iterator[tuple[Sample, np.ndarray | _PairError]]:
        """Heatmaps for a batch (cached ones read back), in order, each or the error it raised."""
        results: dict[str, np.ndarray | _PairError] = {}
        todo: list[tuple[Sample, np.ndarray | None, str | None]] = []
        for sample, future in batch:
            if sample.error is not None:
                results[sample.pair_id] = _PairError("data", DataError(sample.error))
                continue
            key = self.key(sample)
            cached = self.cache.get(key) if key is not None else None
            if cached is not None:
                results[sample.pair_id] = cached
                self.from_cache += 1
                continue
            image = None
            if self.spec.needs_image:
                start = time.perf_counter()
                try:  # a cache entry found corrupt just now has no prefetched image: load it here
                    image = future.result() if future is not None else sample.load_image()
                except CxrbenchError as exc:
                    results[sample.pair_id] = _PairError("load", exc)
                    continue
                except Exception as exc:
                    results[sample.pair_id] = _PairError(
                        "load", DataError(f"cannot read image of pair {sample.pair_id}: {exc}")
                    )
                    continue
                finally:
                    self.timer.add("load", start)
            todo.append((sample, image, key))
        if todo:
            try:
                maps = self._call([s for s, _, _ in todo], [im for _, im, _ in todo])
            except _PairError as err:
                maps = [err] * len(todo)
            for (sample, _, key), heatmap in zip(todo, maps, strict=True):
                results[sample.pair_id] = self._validate_and_store(sample, key, heatmap)
        for sample, _ in batch:
            yield sample, results[sample.pair_id]

    def _validate_and_store(self, sample: Sample, key: str | None, heatmap: Any) -> np.ndarray | _PairError:
        if isinstance(heatmap, _PairError) or self.spec.boxes:
            return heatmap
        try:
            heatmap = check_heatmap(heatmap, f"heatmap of method '{self.name}' for pair {sample.pair_id}")
        except CxrbenchError as exc:
            return _PairError("method", exc)
        self.computed += 1
        if key is not None:
            self.cache.put(key, heatmap)
        return heatmap

    def score(self, sample: Sample, prediction: Any) -> dict[str, Any]:
        start = time.perf_counter()
        if self.spec.boxes:
            scores = score_boxes(prediction, sample.boxes, sample.height, sample.width, protocol=self.protocol)
        else:
            kind = self.spec.frame
            full = kind == "full" or (kind == "auto" and prediction.shape == (sample.height, sample.width))
            try:
                if full:
                    frame = full_frame(prediction, sample.height, sample.width, protocol=self.protocol)
                    scores = score_pair(frame, sample.boxes, protocol=self.protocol)
                else:  # nearest maps are scored on their own grid, exactly (docs/protocol.md section 8)
                    scores = score_square(
                        prediction,
                        sample.height,
                        sample.width,
                        sample.boxes,
                        self.spec.interpolation,
                        protocol=self.protocol,
                    )
            except CxrbenchError as exc:
                raise _PairError("score", exc) from exc
        self.timer.add("score", start)
        return {
            "pair_id": sample.pair_id,
            "image_id": sample.image_id,
            "class_name": sample.class_name,
            "prompt": sample.prompt,
            "cnr": scores.cnr,
            "cnr_signed": scores.cnr_signed,
            "miou": scores.miou,
            "auc": scores.auc,
            "auc_binned": scores.auc_binned,
            **dict(zip(IOU_COLUMNS, scores.iou, strict=True)),
            "n_boxes": len(sample.boxes),
            "box_fraction": box_fraction(sample.boxes, sample.height, sample.width, self.protocol),
            "box_side": box_side(sample.boxes, sample.width),
            "cnr_undefined": scores.cnr_undefined,
            "no_prediction": bool(self.spec.boxes and not prediction),
        }


def _needs_image(engine: _Engine, sample: Sample) -> bool:
    if not engine.spec.needs_image or sample.error is not None:
        return False
    key = engine.key(sample)
    return key is None or engine.cache is None or key not in engine.cache


def _check_options(
    on_error: str, protocol: str, n_resamples: int, confidence: float, seed: int, limit: int | None, name: str | None
) -> None:
    """Reject bad run options before any work is done (each names the option)."""
    if on_error not in ("fail", "skip"):
        raise CxrbenchError(f"--on-error must be 'fail' or 'skip', not {on_error!r}")
    if protocol not in PROTOCOLS:
        raise CxrbenchError(f"--protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
    if not isinstance(n_resamples, int) or not MIN_RESAMPLES <= n_resamples <= MAX_RESAMPLES:
        raise CxrbenchError(
            f"--n-resamples must be an integer from {MIN_RESAMPLES} to {MAX_RESAMPLES:,}, not {n_resamples}"
        )
    if not 0 < confidence < 1:
        raise CxrbenchError(f"confidence must lie strictly between 0 and 1, not {confidence}")
    if not isinstance(seed, int) or seed < 0:
        raise CxrbenchError(f"--seed must be a non-negative integer, not {seed}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise CxrbenchError(f"--limit must be a positive integer, not {limit}")
    if name is not None:
        _check_name(name, "--name")


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]*")


def _check_name(name: str, what: str) -> None:
    """A run name is a plain folder name and a table column: letters, digits and . _ @ + -, first a letter or
    digit; not the cache folder or a result file's name."""
    if not _NAME.fullmatch(name) or name == store.HEATMAPS or name in store.RESULT_FILES:
        raise CxrbenchError(
            f"{what} {name!r} cannot name a run: use letters, digits and '.', '_', '@', '+', '-', starting with a "
            f"letter or digit (not '{store.HEATMAPS}' or a result file's name)"
        )


def _check_predictions(method: Any, samples: Sequence[Sample], on_error: OnError) -> list[str]:
    """Imported predictions (`check_pairs`) match their ids to every pair of the dataset, not only the first
    --limit ones: ids naming no pair are an error, or (skip) a note kept in the summary."""
    check_pairs = getattr(method, "check_pairs", None)
    note = check_pairs([s.pair_id for s in samples], on_error) if check_pairs is not None else None
    return [note] if note else []


def _dataset_config(dataset: Any, options: dict[str, Any]) -> dict[str, Any]:
    """The dataset's effective options (defaults included) when it reports them, else the options given."""
    if hasattr(dataset, "config"):
        return _json_values(dataset.config(), f"dataset {dataset.name!r} config()")
    return _json_values(options, f"dataset {dataset.name!r} options")


def _check_identity(folder: Path, identity: RunIdentity, overwrite: bool) -> None:
    """Refuse to replace a stored run of another identity (docs/results.md, "Run identity")."""
    if overwrite:
        return
    try:
        stored = store.stored_summary(folder)
    except SummaryError as exc:
        raise RunConflictError(
            f"{folder} holds a run that cannot be read ({exc}); pass --overwrite to replace it, or --name LABEL to "
            f"store this run beside it"
        ) from exc
    if stored is None:
        return
    differs = stored.identity.differences(identity)
    if differs:
        raise RunConflictError(
            f"{folder} holds a different run of '{identity.method}' on '{identity.dataset}' (differs in "
            f"{', '.join(differs)}); pass --name LABEL to store this run beside it, or --overwrite to replace it"
        )


def run_benchmark(
    method: str | Any,
    dataset: str | Any,
    *,
    data_root: str | None = None,
    method_options: dict[str, Any] | None = None,
    dataset_options: dict[str, Any] | None = None,
    out: str | Path = "runs",
    name: str | None = None,
    protocol: ScoringProtocol = "cxrbench",
    limit: int | None = None,
    seed: int = 0,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    force: bool = False,
    overwrite: bool = False,
    on_error: OnError = "fail",
    progress: bool = True,
) -> RunResult:
    """Run `method` on `dataset` (registered names or objects) and store the results.

    Writes `<out>/<dataset>/<name or method>/`: `scores.csv` (one row per pair), `summary.json` (a `RunSummary`:
    identity, per-class means and CIs, the Average row, versions, timings), `images.csv` and `errors.csv` (pairs
    skipped with on_error="skip"), replaced as one set. A folder holding a run of another identity (method config,
    dataset and its options, limit, protocol, dataset manifest) is refused unless `overwrite` (docs/results.md).
    """
    _check_options(on_error, protocol, n_resamples, confidence, seed, limit, name)
    started = time.perf_counter()
    dataset_options = dataset_options or {}
    if isinstance(dataset, str):
        dataset = load_dataset(dataset, data_root=data_root, **dataset_options)
    if isinstance(method, str):
        method = load_method(method, **(method_options or {}))
    spec = describe(method)
    method_name = spec.name
    samples = list(islice(iter(dataset), limit))
    if not samples:
        raise DataError(
            f"dataset '{dataset.name}' yielded no pairs (data root {data_root}, options {dataset_options or 'none'}); "
            f"check the data root and the -O options (e.g. the split name)"
        )
    _check_samples(samples)
    if limit is not None and len(samples) < limit:
        limit = None  # the whole dataset: the same run as one without a limit
    needs_all = limit is not None and hasattr(method, "check_pairs")
    notes = _check_predictions(method, list(dataset) if needs_all else samples, on_error)
    timer = _Timer()
    engine = _Engine(method, spec, timer, protocol)
    identity = RunIdentity(
        method=method_name,
        method_config=engine.config,
        dataset=dataset.name,
        dataset_config=_dataset_config(dataset, dataset_options),
        limit=limit,
        protocol=protocol,
        scorer_version=SCORER_VERSION,
        manifest_sha256=_dataset_manifest(samples),
    )
    name = name or store.default_name(method_name, protocol)
    _check_name(name, "the method's name" if name == method_name else "--name")
    folder = store.run_dir(out, dataset.name, name)
    with RunLock(folder):
        store.recover(folder)
        _check_identity(folder, identity, overwrite)
        if spec.cacheable:
            engine.cache = HeatmapCache(store.cache_dir(out, dataset.name, method_name))
            if force:
                engine.cache.clear()
        rows, errors = _score_all(engine, samples, on_error, progress)
        if not rows:
            raise DataError(
                f"no pair of '{dataset.name}' could be scored ({len(errors)} errors, e.g. pair {errors[0]['pair_id']}: "
                f"{errors[0]['error']}); nothing was written"
            )
        scores = pd.DataFrame(rows, columns=list(SCORE_COLUMNS))
        error_frame = pd.DataFrame(errors, columns=list(ERROR_COLUMNS))
        classes = summarise(scores, METRICS, list(dataset.classes), n_resamples, confidence, seed)
        if engine.spec.boxes:  # box methods report how many pairs got no box (docs/protocol.md)
            for class_name, row in classes.items():
                group = scores if class_name == AVERAGE else scores[scores["class_name"] == class_name]
                row["misses"] = int(group["no_prediction"].sum())
        summary = RunSummary(
            name=name,
            identity=identity,
            classes=classes,
            n_pairs=len(samples),
            n_scored=len(scores),
            n_errors=len(error_frame),
            n_cnr_undefined_pairs=int((scores["cnr_undefined"] > 0).sum()),
            notes=notes,
            settings={
                "data_root": data_root,
                "options": _json_values({"method": method_options or {}, "dataset": dataset_options}, "options"),
                "seed": seed,
                "n_resamples": n_resamples,
                "confidence": confidence,
                "iou_thresholds": list(IOU_THRESHOLDS),
                "capability": engine.spec.capability,
                "interpolation": engine.spec.interpolation,
                "frame": engine.spec.frame,
                "output": "boxes" if engine.spec.boxes else "heatmap",
                "cached": engine.cache is not None,
                "on_error": on_error,
                "command": store.command_line(),
            },
            versions=store.package_versions(),
            torch=_torch_record(),
            git_commit=store.git_commit(),
            timings={
                "total_s": round(time.perf_counter() - started, 3),
                **{f"{k}_s": round(v, 3) for k, v in timer.seconds.items()},
                "heatmaps_computed": engine.computed,
                "heatmaps_from_cache": engine.from_cache,
            },
        )
        store.commit_result_set(
            folder,
            {
                store.SCORES: store.table_text(scores),
                store.IMAGES: store.table_text(_image_records(samples)),
                store.ERRORS: store.table_text(error_frame) if errors else None,
                store.SUMMARY: summary.to_json(),
            },
        )
    summary.path = folder / store.SUMMARY
    return RunResult(folder, scores, error_frame, summary)


def _score_all(
    engine: _Engine, samples: list[Sample], on_error: OnError, progress: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    bar = tqdm(total=len(samples), unit="pair", desc=f"{engine.name}", disable=not progress, dynamic_ncols=True)
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="cxrbench-load") as pool:
        todo = [s for s in samples if _needs_image(engine, s)]
        stream = _prefetch(todo, pool)
        waiting = {s.pair_id for s in todo}
        try:
            for start in range(0, len(samples), engine.spec.batch_size):
                batch = []
                for sample in samples[start : start + engine.spec.batch_size]:
                    future = next(stream)[1] if sample.pair_id in waiting else None
                    batch.append((sample, future))
                for sample, result in engine.heatmaps(batch):
                    try:
                        if isinstance(result, _PairError):
                            raise result
                        rows.append(engine.score(sample, result))
                    except _PairError as err:
                        _handle(err, sample, on_error, errors, engine.cache)
                    bar.update(1)
        finally:
            bar.close()
    return rows, errors


def _handle(
    err: _PairError, sample: Sample, on_error: OnError, errors: list[dict[str, Any]], cache: HeatmapCache | None
) -> None:
    if on_error == "fail":
        kept = (
            f"heatmaps computed so far are kept in {cache.folder}; rerun to resume, or "
            if cache is not None and len(cache)
            else ""
        )
        raise CxrbenchError(
            f"pair {sample.pair_id} (image {sample.image_id}), {err.stage}: {err.error} -- {kept}pass --on-error skip "
            f"to log such pairs and go on"
        ) from err.error
    errors.append(
        {
            "pair_id": sample.pair_id,
            "image_id": sample.image_id,
            "class_name": sample.class_name,
            "stage": err.stage,
            "error": str(err.error),
        }
    )
