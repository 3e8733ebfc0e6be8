"""Where a run's work happens (docs/scaling.md): heatmaps computed in this process or on Ray actors, scores
computed in this process or in a bounded pool of worker processes.

The runner keeps the one-writer heatmap cache: it reads cached pairs itself and hands only the others to an
executor, in batches of the method's batch size; whatever comes back (in any order) is validated, cached and
scored by the runner, which puts the rows back in dataset order. Where the work ran therefore never changes
`scores.csv`. Ray is imported only when the Ray executor is asked for.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import signal
import socket
import threading
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
from cxrbench.errors import CxrbenchError, DataError, MethodFailedError
from cxrbench.registry import load_dataset, load_method
from cxrbench.types import Sample

PREFETCH = 4  # images decoded ahead of the method
RAY_DEPTH = 2  # batches queued per Ray worker, so it never waits for the driver between batches
RAY_ATTEMPTS = 3  # a batch whose worker died this often while running it alone is a method error for its pairs

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


def _compute(method: Any, spec: MethodSpec, samples: list[Sample], images: list[Any]) -> tuple[list[Any], float]:
    """Predictions (or PairErrors) for `samples`, whose `images` are arrays or the PairError loading raised."""
    ok = [i for i, image in enumerate(images) if not isinstance(image, PairError)]
    start = time.perf_counter()
    try:
        maps = call_method(method, spec, [samples[i] for i in ok], [images[i] for i in ok]) if ok else []
    except PairError as err:
        if len(ok) > 1 and isinstance(err.error, DataError):  # one pair's data (e.g. its prompt): find which
            maps = [_one(method, spec, samples[i], images[i]) for i in ok]
        else:
            maps = [err] * len(ok)
    results = list(images)
    for i, prediction in zip(ok, maps, strict=True):
        results[i] = prediction
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
        results, seconds = _compute(self.method, self.spec, samples, images)
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


class RayWorker:
    """A Ray actor: loads the method and the dataset once (from their registered names and options, reading
    images from the data root: a file system every node shares) and computes batches of pairs by id.

    It runs two batches at once (a threaded actor): one decodes its images while the other is in the method,
    which is only ever called by one thread at a time.
    """

    def __init__(
        self,
        method: Any,
        method_options: dict[str, Any],
        dataset: Any,
        dataset_options: dict[str, Any],
        limit: Any,
        shared_folder: Path | None = None,
    ):
        self.failure: CxrbenchError | None = None
        try:
            self.method = load_method(method, **method_options) if isinstance(method, str) else method
            self.spec = describe(self.method)
            share_work(self.method, shared_folder)
            if isinstance(dataset, str):
                dataset = load_dataset(dataset, **dataset_options)
            self.samples = {s.pair_id: s for s in islice(iter(dataset), limit)}
        except CxrbenchError as exc:
            self.failure = exc
        except Exception as exc:
            self.failure = CxrbenchError(
                f"a Ray worker could not load the method or dataset: {type(exc).__name__}: {exc}"
            )
        self._lock = threading.Lock()
        self._loader = ThreadPoolExecutor(max_workers=2, thread_name_prefix="cxrbench-load")

    def describe(self) -> tuple[CxrbenchError | None, Any]:
        """(failure, None) or (None, (spec, method config, whether it checks pair ids))."""
        if self.failure is not None:
            return self.failure, None
        try:
            config = method_config(self.method)
        except CxrbenchError as exc:
            return exc, None
        return None, (self.spec, config, hasattr(self.method, "check_pairs"))

    def check_pairs(self, pair_ids: list[str], on_error: str) -> tuple[CxrbenchError | None, str | None]:
        try:
            return None, self.method.check_pairs(pair_ids, on_error)
        except CxrbenchError as exc:
            return exc, None

    def pid(self) -> int:
        return os.getpid()

    def compute(self, pair_ids: list[str]) -> tuple[list[tuple[Any, Any]], float, float]:
        """[(the pair's record as this worker sees it, prediction or PairError)], load and method seconds."""
        samples = [self.samples.get(p) for p in pair_ids]
        missing = [p for p, s in zip(pair_ids, samples, strict=True) if s is None]
        if missing:
            error = DataError(f"the Ray worker's dataset has no pair {missing[0]}: give every node the same data")
            return [(None, PairError("data", error)) for _ in pair_ids], 0.0, 0.0
        start = time.perf_counter()
        images: list[Any] = [None] * len(samples)
        if self.spec.needs_image:
            images = list(self._loader.map(_image_or_error, samples))
        load_s = time.perf_counter() - start
        with self._lock:
            results, method_s = _compute(self.method, self.spec, samples, images)
        return [(sample_record(s), r) for s, r in zip(samples, results, strict=True)], load_s, method_s


def _image_or_error(sample: Sample) -> np.ndarray | PairError:
    try:
        return load_image(sample)
    except PairError as err:
        return err


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise CxrbenchError('--executor ray needs Ray: pip install "cxrbench[ray]"') from None
    return ray


class RayExecutor:
    """Heatmaps computed by Ray actors, `RAY_DEPTH` batches queued on each. A worker that dies is restarted by
    Ray (the method reloaded) and its batches sent to it again, up to RAY_ATTEMPTS times each; a batch that
    still failed is run once more alone on an idle worker, so that a batch that kills its worker cannot take
    another down with it: if that fails too, its pairs are method errors.

    Uses the Ray instance this process is connected to, else connects to `address`, else starts a local one
    with the machine's CPUs and GPUs (and shuts down only what it started).
    """

    def __init__(
        self,
        method: Any,
        method_options: dict[str, Any],
        dataset: Any,
        dataset_options: dict[str, Any],
        limit: int | None,
        address: str | None = None,
        gpus_per_worker: float | None = None,
        workers: int | None = None,
        shared_folder: Path | None = None,
    ):
        self.ray = ray = import_ray()
        self.started = connect_ray(address)
        self.seconds = {"load": 0.0, "method": 0.0}
        self._queue: deque[tuple[Batch, bool]] = deque()  # batches and whether they must run alone
        self._running: dict[Any, tuple[int, Batch, bool]] = {}
        self._records: dict[str, tuple[Any, ...]] = {}
        try:
            gpus, count = _worker_shape(ray.cluster_resources(), gpus_per_worker, workers)
            actor = ray.remote(
                num_cpus=1, num_gpus=gpus, max_restarts=-1, max_task_retries=RAY_ATTEMPTS - 1, max_concurrency=2
            )(RayWorker)
            arguments = (method, method_options, dataset, dataset_options, limit, shared_folder)
            self.actors = [actor.remote(*arguments) for _ in range(count)]
            self._alive = set(range(count))
            self.spec, self.config, self.checks_pairs = self._describe()
        except BaseException:
            self.close()
            raise
        self.gpus_per_worker = gpus

    def _describe(self) -> tuple[MethodSpec, dict[str, Any], bool]:
        answers = self.ray.get([a.describe.remote() for a in self.actors])
        for failure, _ in answers:
            if failure is not None:
                raise failure
        first = answers[0][1]
        for _, other in answers[1:]:
            if other[:2] != first[:2]:
                raise CxrbenchError(
                    f"Ray workers disagree on method '{first[0].name}' (config {first[1]} vs {other[1]}): install the "
                    f"same cxrbench, packages and weights on every node"
                )
        return first

    def check_pairs(self, pair_ids: list[str], on_error: str) -> str | None:
        if not self.checks_pairs:
            return None
        failure, note = self.ray.get(self.actors[0].check_pairs.remote(pair_ids, on_error))
        if failure is not None:
            raise failure
        return note

    def expect(self, samples: Sequence[Sample]) -> None:
        """Workers read images themselves: nothing to decode here."""

    def pids(self) -> list[int]:
        return self.ray.get([a.pid.remote() for a in self.actors])

    def submit(self, batch: Batch) -> None:
        self._queue.append((batch, False))
        self._dispatch()

    @property
    def pending(self) -> bool:
        return bool(self._queue or self._running)

    def _dispatch(self) -> None:
        """Queue batches on the least busy workers; a batch sent again after its worker died goes to an idle
        worker and runs there alone."""
        load = {i: 0 for i in self._alive}
        alone = set()
        for i, _, isolated in self._running.values():
            load[i] += 1
            if isolated:
                alone.add(i)
        while self._queue and load:
            batch, isolated = self._queue[0]
            free = [i for i in load if i not in alone and load[i] < (1 if isolated else RAY_DEPTH)]
            if not free:
                return
            i = min(free, key=load.__getitem__)
            self._queue.popleft()
            self._running[self.actors[i].compute.remote([s.pair_id for s, _ in batch])] = (i, batch, isolated)
            load[i] += 1
            if isolated:
                alone.add(i)

    def poll(self, block: bool) -> list[Outcome]:
        """Outcomes of the batches finished so far (waiting for one when `block`)."""
        if not self._running:
            return []
        refs = list(self._running)
        ready, _ = self.ray.wait(refs, num_returns=1 if block else len(refs), timeout=None if block else 0)
        if block:
            rest = [r for r in refs if r not in ready]
            ready += self.ray.wait(rest, num_returns=len(rest), timeout=0)[0] if rest else []
        outcomes: list[Outcome] = []
        for ref in ready:
            outcomes += self._finish(ref)
        self._dispatch()
        return outcomes

    def _finish(self, ref: Any) -> list[Outcome]:
        actor, batch, isolated = self._running.pop(ref)
        try:
            results, load_s, method_s = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as exc:
            return self._retry(actor, batch, isolated, exc)
        self.seconds["load"] += load_s
        self.seconds["method"] += method_s
        outcomes = []
        for (sample, key), (record, prediction) in zip(batch, results, strict=True):
            if record is not None and record != self._record(sample):
                prediction = PairError(
                    "data",
                    DataError(
                        f"a Ray worker reads other data for pair {sample.pair_id} than the driver (prompt, size, "
                        f"boxes or image content differ): give every node the same data root"
                    ),
                )
            outcomes.append((sample, key, prediction))
        return outcomes

    def _record(self, sample: Sample) -> tuple[Any, ...]:
        if sample.pair_id not in self._records:
            self._records[sample.pair_id] = sample_record(sample)
        return self._records[sample.pair_id]

    def _retry(self, actor: int, batch: Batch, isolated: bool, exc: Exception) -> list[Outcome]:
        """A batch whose worker died RAY_ATTEMPTS times: run it alone, or (if it was) its pairs are errors."""
        if isinstance(exc, self.ray.exceptions.ActorDiedError):  # the worker is gone for good
            self._alive.discard(actor)
        if not self._alive:
            raise CxrbenchError(f"every Ray worker died ({exc}); heatmaps computed so far are cached: rerun to resume")
        if not isolated:
            self._queue.appendleft((batch, True))
            return []
        error = MethodFailedError(
            f"the Ray worker computing it died {RAY_ATTEMPTS} times, also running it alone ({type(exc).__name__})"
        )
        return [(sample, key, PairError("method", error)) for sample, key in batch]

    def close(self) -> None:
        for actor in getattr(self, "actors", []):
            self.ray.kill(actor, no_restart=True)
        if self.started:
            self.ray.shutdown()
        self.started = False


def connect_ray(address: str | None) -> bool:
    """Use the Ray this process is connected to, else join `address`, else start a local instance with the
    machine's CPUs and GPUs. True when this call started or joined it (the caller then shuts it down)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    _check_reachable(address)
    try:
        ray.init(address=address or "local", include_dashboard=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise CxrbenchError(f"cannot start or reach Ray at --ray-address {address or 'local'}: {exc}") from exc
    return True


def _check_reachable(address: str | None) -> None:
    """A HOST:PORT address that nothing answers on is one line at once (Ray itself retries for minutes)."""
    host, _, port = (address or "").rpartition(":")
    if not host or "/" in host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as exc:
        raise CxrbenchError(
            f"cannot reach Ray at --ray-address {address}: {exc.strerror or exc}; start a cluster there with "
            f"`ray start --head --port={port}` (docs/scaling.md)"
        ) from None


def _worker_shape(resources: dict[str, float], gpus_per_worker: float | None, workers: int | None) -> tuple[float, int]:
    """GPUs per worker (default: 1 on a cluster with GPUs, else 0) and the number of workers (default: as many
    as the cluster's GPUs, or CPUs for CPU methods, allow; each also takes one CPU)."""
    cpus, gpus = int(resources.get("CPU", 0)), resources.get("GPU", 0.0)
    per = (1.0 if gpus else 0.0) if gpus_per_worker is None else float(gpus_per_worker)
    if per < 0 or per > gpus:
        raise CxrbenchError(f"--gpus-per-worker {per:g}: the Ray cluster has {gpus:g} GPUs")
    fit = min(cpus, int(gpus // per)) if per else cpus
    if workers is not None and not (isinstance(workers, int) and 1 <= workers <= fit):
        raise CxrbenchError(
            f"--workers {workers}: the Ray cluster fits 1 to {fit} workers ({cpus} CPUs, {gpus:g} GPUs)"
        )
    if fit < 1:
        raise CxrbenchError(f"the Ray cluster has no room for a worker ({cpus} CPUs, {gpus:g} GPUs)")
    return per, workers or fit


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
