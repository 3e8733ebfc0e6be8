"""Where a run's work happens (docs/scaling.md): heatmaps computed in this process (here) or on Ray actors
(`ray_executor.py`), scores computed in this process or in a bounded pool of worker processes (here).

The runner keeps the one-writer heatmap cache: it reads cached pairs itself and hands only the others to an
executor, in batches of the method's batch size; whatever comes back (in any order) is validated, cached and
scored by the runner, which puts the rows back in dataset order. Where the work ran therefore never changes
`scores.csv`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from cxrbench.benchmark.summary import method_config
from cxrbench.capabilities import MethodSpec, describe
from cxrbench.errors import CxrbenchError, DataError, MethodFailedError, PairsDataError
from cxrbench.types import Sample

PREFETCH = 4  # images decoded ahead of the method

Batch = list[tuple[Sample, "str | None"]]  # pairs and their cache keys
Outcome = tuple[Sample, "str | None", Any]  # a pair, its key and its raw prediction or PairError


class PairError(Exception):
    """One pair failed at one stage ("data", "load", "method", "score"); handled per --on-error."""

    def __init__(self, stage: str, error: Exception):
        super().__init__(str(error))
        self.stage = stage
        self.error = error

    def __reduce__(self) -> tuple[Any, ...]:  # crosses process boundaries (Ray workers, the scoring pool)
        return (PairError, (self.stage, self.error))


def call_method(method: Any, spec: MethodSpec, samples: list[Sample], images: list[np.ndarray | None]) -> list[Any]:
    """The method's predictions for `samples` through its capability (docs/methods.md); its failures become
    one PairError for the batch."""
    try:
        if spec.capability == "boxes":
            maps = [method.boxes_for_sample(s) for s in samples]
        elif spec.capability == "sample":
            maps = [method.heatmap_for_sample(s) for s in samples]
        elif spec.capability == "batched":
            classes = {"class_names": [s.class_name for s in samples]} if spec.class_names else {}
            maps = list(method.heatmaps(images, [s.prompt for s in samples], **classes))
        else:
            classes = {"class_name": samples[0].class_name} if spec.class_names else {}
            maps = [method.heatmap(images[0], samples[0].prompt, **classes)]
    except CxrbenchError as exc:
        raise PairError("method", exc) from exc
    except Exception as exc:
        raise PairError(
            "method", MethodFailedError(f"method '{spec.name}' raised {type(exc).__name__}: {exc}")
        ) from exc
    if len(maps) != len(samples):
        message = f"method '{spec.name}' returned {len(maps)} heatmaps for {len(samples)} images"
        raise PairError("method", MethodFailedError(message))
    return maps


def share_work(method: Any, folder: Path | None) -> None:
    """Give a method that keeps work for its other configurations (`share_work`, docs/methods.md) the run's
    shared folder."""
    if folder is None or not hasattr(method, "share_work"):
        return
    try:
        method.share_work(folder)
    except OSError as exc:  # sharing saves work, it is never needed: go on without it
        reason = exc.strerror or exc
        warnings.warn(f"cannot keep shared work in {folder} ({reason}); computing without it", stacklevel=2)


def load_image(sample: Sample) -> np.ndarray:
    """The sample's image, or PairError("load") naming the pair."""
    try:
        return sample.load_image()
    except CxrbenchError as exc:
        raise PairError("load", exc) from exc
    except Exception as exc:
        raise PairError("load", DataError(f"cannot read image of pair {sample.pair_id}: {exc}")) from exc


def compute_batch(method: Any, spec: MethodSpec, samples: list[Sample], images: list[Any]) -> tuple[list[Any], float]:
    """Predictions (or PairErrors) for `samples`, whose `images` are arrays or the PairError loading raised. Pairs
    a method names as bad data (PairsDataError) are left out and the others computed again as one batch; after
    another data error each pair is computed alone, to find which one it was."""
    results = list(images)
    ok = [i for i, image in enumerate(images) if not isinstance(image, PairError)]
    start = time.perf_counter()
    while ok:
        try:
            maps = call_method(method, spec, [samples[i] for i in ok], [images[i] for i in ok])
        except PairError as err:
            reasons = err.error.reasons if isinstance(err.error, PairsDataError) else {}
            if reasons and set(reasons) <= set(range(len(ok))):
                for k, reason in reasons.items():
                    results[ok[k]] = PairError("data", DataError(reason))
                ok = [i for k, i in enumerate(ok) if k not in reasons]
                continue
            if len(ok) > 1 and isinstance(err.error, DataError):
                maps = [_one(method, spec, samples[i], images[i]) for i in ok]
            else:
                maps = [err] * len(ok)
        for i, prediction in zip(ok, maps, strict=True):
            results[i] = prediction
        break
    return results, time.perf_counter() - start


def _one(method: Any, spec: MethodSpec, sample: Sample, image: Any) -> Any:
    """The prediction for one pair, or its PairError (stage "data" for a DataError the method raised)."""
    try:
        return call_method(method, spec, [sample], [image])[0]
    except PairError as err:
        return PairError("data", err.error) if isinstance(err.error, DataError) else err


class LocalExecutor:
    """The method in this process, images decoded in two threads a few pairs ahead of it."""

    def __init__(self, method: Any, shared_folder: Path | None = None):
        self.method = method
        self.spec = describe(method)
        self.config = method_config(method)
        share_work(method, shared_folder)
        self.seconds = {"load": 0.0, "method": 0.0}
        self._done: deque[Outcome] = deque()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="cxrbench-load")
        self._stream: Iterator[tuple[Sample, Future]] = iter(())
        self._waiting: set[str] = set()

    @property
    def checks_pairs(self) -> bool:
        """Whether the method checks pair ids (imported predictions)."""
        return hasattr(self.method, "check_pairs")

    def check_pairs(self, pair_ids: list[str], on_error: str) -> str | None:
        return self.method.check_pairs(pair_ids, on_error) if self.checks_pairs else None

    def expect(self, samples: Sequence[Sample]) -> None:
        """The pairs that will be submitted, in order: their images are decoded ahead."""
        if self.spec.needs_image:
            self._stream = _prefetch(samples, self._pool)
            self._waiting = {s.pair_id for s in samples}

    def seal(self) -> None:
        """No more batches: each was computed as it was submitted."""

    def submit(self, batch: Batch) -> None:
        samples = [s for s, _ in batch]
        images: list[Any] = [None] * len(samples)
        if self.spec.needs_image:
            start = time.perf_counter()
            for i, sample in enumerate(samples):  # a pair not expected (a corrupt cache entry) is loaded here
                future = next(self._stream)[1] if sample.pair_id in self._waiting else None
                try:
                    images[i] = future.result() if future is not None else load_image(sample)
                except PairError as err:
                    images[i] = err
            self.seconds["load"] += time.perf_counter() - start
        results, seconds = compute_batch(self.method, self.spec, samples, images)
        self.seconds["method"] += seconds
        self._done.extend((s, key, r) for (s, key), r in zip(batch, results, strict=True))

    @property
    def pending(self) -> bool:
        return bool(self._done)

    def poll(self, block: bool) -> list[Outcome]:
        done = list(self._done)
        self._done.clear()
        return done

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _prefetch(samples: Sequence[Sample], pool: ThreadPoolExecutor) -> Iterator[tuple[Sample, Future]]:
    """Yield (sample, future image) with at most PREFETCH images decoded ahead."""
    pending: deque[tuple[Sample, Future]] = deque()
    queue = iter(samples)
    for sample in islice(queue, PREFETCH):
        pending.append((sample, pool.submit(load_image, sample)))
    while pending:
        yield pending.popleft()
        for sample in islice(queue, 1):
            pending.append((sample, pool.submit(load_image, sample)))


def sample_record(sample: Sample) -> tuple[Any, ...]:
    """What decides a pair's heatmap besides the method: prompt, size, boxes and the image's content hash."""
    try:
        image = "unreadable" if sample.error else sample.image.fingerprint()
    except DataError as exc:
        image = f"unreadable: {exc}"
    return (sample.prompt, sample.height, sample.width, tuple(b.as_tuple() for b in sample.boxes), image)


def keep_freed_memory() -> None:
    """Ask glibc to keep the scorer's freed buffers for the next pair instead of returning them to the system
    (M_MMAP_THRESHOLD 64 MiB, M_TRIM_THRESHOLD 256 MiB): otherwise each MIMIC-size pair pays ~12 ms of page faults
    mapping them in again (docs/scaling.md, "Scoring throughput"). Nothing elsewhere than glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, 64 << 20)
    mallopt(_M_TRIM_THRESHOLD, 256 << 20)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc malloc.h


def _start_scoring_process() -> None:
    """Scoring processes leave Ctrl-C to the run, which shuts them down."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    keep_freed_memory()


class ScorePool:
    """Scores finished pairs in `workers` processes while the method computes the next batch (0: in this
    process). At most 2 x workers pairs wait or run, so memory stays bounded; `function(*args)` must be a
    module-level function that returns a value or raises PairError."""

    def __init__(self, workers: int, function: Callable[..., Any]):
        self.function = function
        self.limit = 2 * workers
        self._pool = (
            ProcessPoolExecutor(workers, mp_context=_context(), initializer=_start_scoring_process) if workers else None
        )
        if not workers:
            keep_freed_memory()
        self._pending: dict[Future, Any] = {}
        self._done: list[tuple[Any, Any]] = []

    def __enter__(self) -> ScorePool:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, tag: Any, *args: Any) -> None:
        if self._pool is None:
            try:
                self._done.append((tag, self.function(*args)))
            except PairError as err:
                self._done.append((tag, err))
            return
        while len(self._pending) >= self.limit:
            self._collect(wait(self._pending, return_when=FIRST_COMPLETED).done)
        self._pending[self._pool.submit(self.function, *args)] = tag

    def results(self, block: bool = False) -> list[tuple[Any, Any]]:
        """(tag, value or PairError) of the pairs finished so far; all of them when `block`."""
        if block:
            self._collect(wait(self._pending).done)
        else:
            self._collect([f for f in self._pending if f.done()])
        done, self._done = self._done, []
        return done

    def _collect(self, futures: Any) -> None:
        for future in futures:
            tag = self._pending.pop(future)
            try:
                self._done.append((tag, future.result()))
            except PairError as err:
                self._done.append((tag, err))
            except BrokenProcessPool as exc:
                raise CxrbenchError(
                    f"a scoring process died ({exc}); heatmaps are cached: rerun, with fewer --score-workers if memory "
                    f"ran out"
                ) from exc


def _context() -> Any:
    """forkserver: workers fork from a clean process, never from this one's threads (Ray, torch, the loaders)."""
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if "forkserver" in methods:
        context.set_forkserver_preload(["cxrbench.benchmark.runner"])
    return context


def default_score_workers(n_pairs: int, cached_only: bool = False) -> int:
    """Scoring processes when none are asked for: none for small runs (a process costs ~1 s to start), else one
    per spare core, at most 4; but none where only one would run and every map is cached (`cached_only`): with no
    method to overlap with, one process only adds the transfer of each map (docs/scaling.md)."""
    workers = 0 if n_pairs < 64 else max(1, min(4, (os.cpu_count() or 1) - 1))
    return 0 if cached_only and workers == 1 else workers
