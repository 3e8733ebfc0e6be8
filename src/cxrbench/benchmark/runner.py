"""Run one method on one dataset: stream samples -> method -> heatmap cache -> protocol -> metrics -> summary.

The method runs in this process or on Ray actors, and scores are computed here or in a pool of processes
(`executors.py`, docs/scaling.md); this module is the one writer of the heatmap cache. Every heatmap is cached
as soon as it is computed, so an interrupted run (crash, Ctrl-C, SIGKILL) resumes without recomputing any
cached pair; scores are recomputed from the cache, which is cheap and keeps them identical.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cxrbench.benchmark import store
from cxrbench.benchmark.aggregate import AVERAGE, summarise
from cxrbench.benchmark.bootstrap import MAX_RESAMPLES, MIN_RESAMPLES
from cxrbench.benchmark.cache import HeatmapCache, RunLock, clear_shared, sample_cache_key, shared_dir
from cxrbench.benchmark.executors import Batch, LocalExecutor, PairError, ScorePool, default_score_workers
from cxrbench.benchmark.metrics import IOU_THRESHOLDS, score_boxes, score_pair
from cxrbench.benchmark.protocol import (
    PROTOCOLS,
    SCORER_VERSION,
    ScoringProtocol,
    check_heatmap,
    full_frame,
    to_image_frame,
)
from cxrbench.benchmark.strata import box_fraction, box_side
from cxrbench.benchmark.summary import RunIdentity, RunSummary, SummaryError, json_values
from cxrbench.benchmark.weighted import score_square
from cxrbench.capabilities import MethodSpec
from cxrbench.errors import CxrbenchError, DataError, RunConflictError
from cxrbench.registry import load_dataset, load_method
from cxrbench.types import ImageSource, Sample

OnError = Literal["fail", "skip"]
ExecutorName = Literal["local", "ray"]
Executor = Any  # LocalExecutor, or ray_executor.RayExecutor (Ray is imported only when asked for)
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


def _dataset_manifest(samples: Sequence[Sample]) -> tuple[str, dict[str, str]]:
    """sha256 over every pair's annotation (id, class, prompt, size, boxes) and image content hash, in order;
    and the pairs whose image could not be read, with the reason."""
    digest = hashlib.sha256()
    unreadable: dict[str, str] = {}
    for s in samples:
        try:
            image = "unreadable" if s.error else s.image.fingerprint()
        except DataError as exc:
            image = f"unreadable: {exc}"
            unreadable[s.pair_id] = f"pair {s.pair_id}: {exc}"
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
    return digest.hexdigest(), unreadable


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


def _no_image() -> Any:
    raise DataError("the scorer never loads images")


_NO_IMAGE = ImageSource(_no_image, _no_image)


def score_prediction(
    spec: MethodSpec, protocol: ScoringProtocol, sample: Sample, prediction: Any, device: str | None = None
) -> tuple[dict[str, Any], float]:
    """One scores.csv row for a validated prediction (docs/protocol.md) and the seconds it took; a pair the
    scorer refuses raises PairError("score"). Module-level, so that scoring processes can run it. With a torch
    `device`, maps scored in the image frame are scored there (torch_scorer.py); nearest maps are scored on their
    own grid, which is faster on the CPU."""
    start = time.perf_counter()
    if spec.boxes:
        scores = score_boxes(prediction, sample.boxes, sample.height, sample.width, protocol=protocol)
    else:
        full = spec.frame == "full" or (spec.frame == "auto" and prediction.shape == (sample.height, sample.width))
        try:
            if not full and (spec.interpolation == "nearest" or device is None):  # docs/protocol.md section 8
                scores = score_square(
                    prediction, sample.height, sample.width, sample.boxes, spec.interpolation, protocol=protocol
                )
            else:
                if full:
                    frame = full_frame(prediction, sample.height, sample.width, protocol=protocol)
                else:
                    frame = to_image_frame(prediction, sample.height, sample.width, spec.interpolation, protocol)
                scores = score_image_frame(frame, sample.boxes, protocol, device)
        except CxrbenchError as exc:
            raise PairError("score", exc) from exc
    row = {
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
        "box_fraction": box_fraction(sample.boxes, sample.height, sample.width, protocol),
        "box_side": box_side(sample.boxes, sample.width),
        "cnr_undefined": scores.cnr_undefined,
        "no_prediction": bool(spec.boxes and not prediction),
    }
    return row, time.perf_counter() - start


class _Engine:
    """The one writer of a run's heatmap cache: reads cached pairs, validates and stores computed ones."""

    def __init__(
        self, spec: MethodSpec, config: dict[str, Any], protocol: ScoringProtocol, score_device: str | None = None
    ):
        self.spec = spec
        self.name = spec.name
        self.config = config
        self.protocol = protocol
        self.cache: HeatmapCache | None = None
        self.score_device = score_device
        self.computed = 0
        self.from_cache = 0

    def key(self, sample: Sample) -> str | None:
        """The sample's cache key; None without a cache (or when its image cannot be read: loading will say why)."""
        if self.cache is None:
            return None
        try:
            return sample_cache_key(self.name, self.config, sample, self.spec.class_names)
        except DataError:
            return None

    def cached(self, key: str | None) -> np.ndarray | None:
        """The cached heatmap, or None (absent, or corrupt: then it is recomputed)."""
        heatmap = self.cache.get(key) if key is not None else None
        self.from_cache += heatmap is not None
        return heatmap

    def needs_computing(self, sample: Sample) -> bool:
        """Whether the pair goes to the method (it can be read and its heatmap is not in the cache index)."""
        if sample.error is not None:
            return False
        key = self.key(sample)
        return key is None or key not in self.cache

    def validate_and_store(self, sample: Sample, key: str | None, heatmap: Any) -> Any:
        if isinstance(heatmap, PairError) or self.spec.boxes:
            return heatmap
        try:
            heatmap = check_heatmap(heatmap, f"heatmap of method '{self.name}' for pair {sample.pair_id}")
        except CxrbenchError as exc:
            return PairError("method", exc)
        self.computed += 1
        if key is not None:
            self.cache.put(key, heatmap)
        return heatmap


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


def _check_predictions(executor: Executor, samples: Sequence[Sample], on_error: OnError) -> list[str]:
    """Imported predictions (`check_pairs`) match their ids to every pair of the dataset, not only the first
    --limit ones: ids naming no pair are an error, or (skip) a note kept in the summary."""
    note = executor.check_pairs([s.pair_id for s in samples], on_error)
    return [note] if note else []


def _dataset_config(dataset: Any, options: dict[str, Any]) -> dict[str, Any]:
    """The dataset's effective options (defaults included) when it reports them, else the options given."""
    if hasattr(dataset, "config"):
        return json_values(dataset.config(), f"dataset {dataset.name!r} config()")
    return json_values(options, f"dataset {dataset.name!r} options")


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
    progress: bool | Callable[[str, int], Any] = True,
    executor: ExecutorName = "local",
    ray_address: str | None = None,
    gpus_per_worker: float | None = None,
    workers: int | None = None,
    score_workers: int | None = None,
    score_device: str | None = None,
    ray_pool: Any = None,
) -> RunResult:
    """Run `method` on `dataset` (registered names or objects) and store the results.

    Writes `<out>/<dataset>/<name or method>/`: `scores.csv` (one row per pair), `summary.json` (a `RunSummary`:
    identity, per-class means and CIs, the Average row, versions, timings), `images.csv` and `errors.csv` (pairs
    skipped with on_error="skip"), replaced as one set. A folder holding a run of another identity (method config,
    dataset and its options, limit, protocol, dataset manifest) is refused unless `overwrite` (docs/results.md).

    `executor="ray"` computes heatmaps on Ray actors (`workers` of them, `gpus_per_worker` GPUs each; the Ray
    instance at `ray_address`, the one this process is connected to, or a local one started for the run), each
    loading the method and dataset from their names and options; `score_workers` processes score finished pairs
    while the method computes (0: in this process; default: `default_score_workers`); `score_device` scores maps
    in the image frame with torch on that device, in this process. None of these changes `scores.csv` beyond
    float rounding of CNR (docs/scaling.md).

    `ray_pool`: a `ray_executor.RayPool` that computes this run's heatmaps together with other runs' (a sweep's
    configurations); it replaces `ray_address`, `gpus_per_worker` and `workers`.

    `progress`: show a progress bar, or a callable (description, total) -> bar (with `update(n)` and `close()`)
    that a caller such as a sweep uses to draw one bar over several runs.
    """
    _check_options(on_error, protocol, n_resamples, confidence, seed, limit, name)
    ray_options = {"ray_address": ray_address, "gpus_per_worker": gpus_per_worker, "workers": workers}
    _check_executor(executor, score_workers, ray_options, ray_pool)
    _check_score_device(score_device, score_workers)
    started = time.perf_counter()
    dataset_options = dataset_options or {}
    method_options = method_options or {}
    dataset_name = dataset if isinstance(dataset, str) else None  # Ray workers rebuild a registered dataset
    if isinstance(dataset, str):
        dataset = load_dataset(dataset, data_root=data_root, **dataset_options)
    samples = list(islice(iter(dataset), limit))
    if not samples:
        raise DataError(
            f"dataset '{dataset.name}' yielded no pairs (data root {data_root}, options {dataset_options or 'none'}); "
            f"check the data root and the -O options (e.g. the split name)"
        )
    _check_samples(samples)
    shared = shared_dir(Path(out).resolve(), dataset.name)  # absolute: Ray workers do not share our directory
    if force:  # recompute everything: the work methods share goes too
        clear_shared(shared)
    with _executor(
        method,
        method_options,
        dataset_name or dataset,
        data_root,
        dataset_options,
        limit,
        executor,
        ray_address,
        gpus_per_worker,
        workers,
        shared,
        ray_pool,
    ) as runner:
        spec = runner.spec
        method_name = spec.name
        limit = limit if limit is None or len(samples) >= limit else None  # the whole dataset: no limit
        needs_all = limit is not None and runner.checks_pairs
        notes = _check_predictions(runner, list(dataset) if needs_all else samples, on_error)
        engine = _Engine(spec, runner.config, protocol, score_device)
        manifest, unreadable = _dataset_manifest(samples)
        identity = RunIdentity(
            method=method_name,
            method_config=engine.config,
            dataset=dataset.name,
            dataset_config=_dataset_config(dataset, dataset_options),
            limit=limit,
            protocol=protocol,
            scorer_version=SCORER_VERSION,
            manifest_sha256=manifest,
        )
        # a pair whose image cannot be read is a data error for every method, image-independent ones included,
        # so that all methods are scored on the same pairs
        samples = [
            Sample.broken(s.pair_id, s.image_id, s.class_name, unreadable[s.pair_id]) if s.pair_id in unreadable else s
            for s in samples
        ]
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
            timer = _Timer()
            to_compute = [s for s in samples if engine.needs_computing(s)]
            pool_size = default_score_workers(len(samples), cached_only=not to_compute)
            pool_size = pool_size if score_workers is None else score_workers
            pool_size = 0 if score_device is not None else pool_size  # torch scores in this process
            rows, errors = _score_all(engine, runner, samples, to_compute, on_error, (name, progress), pool_size, timer)
            if not rows:
                first = errors[0]
                raise DataError(
                    f"no pair of '{dataset.name}' could be scored ({len(errors)} errors, e.g. pair {first['pair_id']}: "
                    f"{first['error']}); nothing was written"
                )
            scores = pd.DataFrame(rows, columns=list(SCORE_COLUMNS))
            error_frame = pd.DataFrame(errors, columns=list(ERROR_COLUMNS))
            classes = summarise(scores, METRICS, list(dataset.classes), n_resamples, confidence, seed)
            if spec.boxes:  # box methods report how many pairs got no box (docs/protocol.md)
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
                    "options": json_values({"method": method_options, "dataset": dataset_options}, "options"),
                    "seed": seed,
                    "n_resamples": n_resamples,
                    "confidence": confidence,
                    "iou_thresholds": list(IOU_THRESHOLDS),
                    "capability": spec.capability,
                    "interpolation": spec.interpolation,
                    "frame": spec.frame,
                    "output": "boxes" if spec.boxes else "heatmap",
                    "bound": spec.bound or spec.class_names,  # a method reading the class is no competitor
                    "uses_class_names": spec.class_names,
                    "dataset_release": dataset.release() if hasattr(dataset, "release") else None,
                    "cached": engine.cache is not None,
                    "on_error": on_error,
                    "executor": executor,
                    "score_workers": pool_size,
                    "score_device": score_device,
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


@contextmanager
def _executor(
    method: str | Any,
    method_options: dict[str, Any],
    dataset: str | Any,
    data_root: str | None,
    dataset_options: dict[str, Any],
    limit: int | None,
    executor: ExecutorName,
    ray_address: str | None,
    gpus_per_worker: float | None,
    workers: int | None,
    shared_folder: Path | None,
    ray_pool: Any,
) -> Iterator[Executor]:
    """The method in this process, or on Ray workers (of `ray_pool`, or of a pool of the run's own) that rebuild a
    registered dataset (by name, data root and options) and read its images themselves; closed however the run
    ends. A method keeping work for its other configurations gets `shared_folder` (docs/methods.md)."""
    if executor == "ray":
        from cxrbench.benchmark.ray_executor import RayPool

        options = {"data_root": data_root, **dataset_options} if isinstance(dataset, str) else {}
        with ExitStack() as stack:
            pool = ray_pool or stack.enter_context(RayPool(ray_address, gpus_per_worker, workers))
            runner = pool.executor(method, method_options, dataset, options, limit, shared_folder)
            try:
                yield runner
            finally:
                runner.close()
        return
    method = load_method(method, **method_options) if isinstance(method, str) else method
    local = LocalExecutor(method, shared_folder)
    try:
        yield local
    finally:
        local.close()


def score_image_frame(frame: np.ndarray, boxes: Sequence[Any], protocol: ScoringProtocol, device: str | None) -> Any:
    """`score_pair` of an image-frame map, with torch on `device` when one is given (docs/scaling.md)."""
    if device is None:
        return score_pair(frame, boxes, protocol=protocol)
    from cxrbench.benchmark.torch_scorer import score_frame

    try:
        return score_frame(frame, boxes, protocol=protocol, device=device)
    except RuntimeError as exc:  # out of memory on a device the method also uses, a device-side error
        raise CxrbenchError(f"--score-device {device!r}: {str(exc).splitlines()[0]}") from exc


def _check_score_device(device: str | None, score_workers: int | None) -> None:
    """--score-device: torch installed, a device torch knows and can allocate on; the scoring pool stays off."""
    if device is None:
        return
    if score_workers:
        raise CxrbenchError("--score-device scores in the run's own process: leave out --score-workers")
    try:
        import torch
    except ImportError:
        raise CxrbenchError("--score-device needs torch (pip install torch)") from None
    try:
        torch.zeros(1, device=device)
    except (RuntimeError, AssertionError, ValueError) as exc:
        raise CxrbenchError(f"--score-device {device!r}: torch cannot use it ({str(exc).splitlines()[0]})") from None


def _check_executor(executor: str, score_workers: int | None, ray_options: dict[str, Any], ray_pool: Any) -> None:
    if executor not in ("local", "ray"):
        raise CxrbenchError(f"--executor must be 'local' or 'ray', not {executor!r}")
    if ray_pool is not None and (executor != "ray" or any(v is not None for v in ray_options.values())):
        raise CxrbenchError("ray_pool= goes with executor='ray' and replaces ray_address, gpus_per_worker, workers")
    given = [f"--{k.replace('_', '-')}" for k, v in ray_options.items() if v is not None]
    if executor == "local" and given:
        raise CxrbenchError(f"{', '.join(given)} applies to --executor ray only")
    if score_workers is not None and (not isinstance(score_workers, int) or score_workers < 0):
        raise CxrbenchError(f"--score-workers must be a non-negative integer, not {score_workers}")


def _score_all(
    engine: _Engine,
    executor: Executor,
    samples: list[Sample],
    to_compute: list[Sample],
    on_error: OnError,
    progress: tuple[str, bool | Callable[[str, int], Any]],
    score_workers: int,
    timer: _Timer,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows and error records in dataset order. Pairs are walked in order: a cached heatmap is scored at once,
    the others go to the executor in batches; whatever the executor and the scoring pool finish (in any order)
    is put back in place. `progress`: the run's name and its bar (see run_benchmark)."""
    position = {s.pair_id: i for i, s in enumerate(samples)}
    rows: dict[int, dict[str, Any]] = {}
    errors: dict[int, dict[str, Any]] = {}
    label, show = progress  # the run's name, and a bar or whether to draw one
    if callable(show):
        bar = show(label, len(samples))
    else:
        bar = tqdm(total=len(samples), unit="pair", desc=label, disable=not show, dynamic_ncols=True)

    def finish(sample: Sample, result: Any) -> None:
        if isinstance(result, PairError):
            errors[position[sample.pair_id]] = _handle(result, sample, on_error, engine.cache)
        else:
            row, seconds = result
            timer.seconds["score"] += seconds
            rows[position[sample.pair_id]] = row
        bar.update(1)

    def score(sample: Sample, prediction: Any) -> None:
        if isinstance(prediction, PairError):
            finish(sample, prediction)
        else:
            light = replace(sample, image=_NO_IMAGE)
            pool.submit(sample, engine.spec, engine.protocol, light, prediction, engine.score_device)

    def collect(block: bool) -> None:
        for sample, key, prediction in executor.poll(block):
            score(sample, engine.validate_and_store(sample, key, prediction))
        for sample, result in pool.results():
            finish(sample, result)

    try:
        with ScorePool(score_workers, score_prediction) as pool:
            executor.expect(to_compute)
            batch: Batch = []
            for sample in samples:
                if sample.error is not None:
                    score(sample, PairError("data", DataError(sample.error)))
                    continue
                key = engine.key(sample)
                cached = engine.cached(key)
                if cached is not None:
                    score(sample, cached)
                else:
                    batch.append((sample, key))
                if len(batch) == engine.spec.batch_size:
                    executor.submit(batch)
                    batch = []
                collect(block=False)
            if batch:
                executor.submit(batch)
            executor.seal()
            while executor.pending:
                collect(block=True)
            for sample, result in pool.results(block=True):
                finish(sample, result)
        lost = [s.pair_id for i, s in enumerate(samples) if i not in rows and i not in errors]
        if lost:  # never expected: an executor lost track of a batch
            raise CxrbenchError(
                f"{len(lost)} pairs never came back from the executor (e.g. pair {lost[0]}); heatmaps computed so far "
                f"are cached: rerun to resume"
            )
    finally:
        bar.close()
        timer.seconds["load"] += executor.seconds["load"]
        timer.seconds["method"] += executor.seconds["method"]
    return [rows[i] for i in sorted(rows)], [errors[i] for i in sorted(errors)]


def _handle(err: PairError, sample: Sample, on_error: OnError, cache: HeatmapCache | None) -> dict[str, Any]:
    """The pair's error record (on_error="skip"), or the run stops with one line naming the pair."""
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
    return {
        "pair_id": sample.pair_id,
        "image_id": sample.image_id,
        "class_name": sample.class_name,
        "stage": err.stage,
        "error": str(err.error),
    }
