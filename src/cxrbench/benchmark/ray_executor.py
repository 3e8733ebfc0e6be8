"""Heatmaps computed by Ray actors (docs/scaling.md, "How a Ray run works" and "Sweeps on Ray").

`RayPool` is a set of actors serving one dataset: each rebuilds the dataset once and loads, on first use, the
method of every run it is given work for (`RayWorker`). `RayPool.executor(...)` opens one run's view of the pool,
the runner's executor: its batches wait in the pool, which hands them to the least busy actors, runs opened
earlier first. A plain run opens one view on a pool of its own; a sweep opens one per configuration on one pool,
so the actors stay up for the whole grid and a configuration's batches fill the actors the previous one no longer
needs. Ray is imported only here, and only when the Ray executor is asked for.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from cxrbench.benchmark.executors import (
    Batch,
    Outcome,
    PairError,
    compute_batch,
    load_image,
    sample_record,
    share_work,
)
from cxrbench.benchmark.summary import method_config
from cxrbench.capabilities import MethodSpec, describe
from cxrbench.errors import CxrbenchError, DataError, MethodFailedError
from cxrbench.registry import load_dataset, load_method
from cxrbench.types import Sample

RAY_DEPTH = 2  # batches queued per Ray worker, so it never waits for the driver between batches
RAY_ATTEMPTS = 3  # a batch whose worker died this often while running it alone is a method error for its pairs
DROP_WAIT_S = 10.0  # how long a normal close waits for the workers to drop the methods of closed runs
WAKE_S = 1.0  # how often a run waiting for a free worker looks again (batches of closed runs free them silently)


class RayWorker:
    """A Ray actor: rebuilds the dataset once (from its registered name and options, reading images from the data
    root: a file system every node shares), loads each run's method on first use (again after Ray restarted the
    actor) and computes batches of pairs by id.

    It runs RAY_DEPTH batches and one other call at once (a threaded actor): one batch decodes its images while the
    other is in a method, which is only ever called by one thread at a time, and describing a run's method never
    waits behind two batches. A run's method is dropped when the run closes.
    """

    def __init__(self, dataset: Any, dataset_options: dict[str, Any], limit: Any, shared_folder: Path | None):
        self.failure: CxrbenchError | None = None
        self.samples: dict[str, Sample] = {}
        try:
            if isinstance(dataset, str):
                dataset = load_dataset(dataset, **dataset_options)
            self.samples = {s.pair_id: s for s in islice(iter(dataset), limit)}
        except CxrbenchError as exc:
            self.failure = exc
        except Exception as exc:
            self.failure = CxrbenchError(f"a Ray worker could not load the dataset: {type(exc).__name__}: {exc}")
        self.shared_folder = shared_folder
        self.methods: dict[int, tuple[Any, MethodSpec]] = {}
        self.closed: set[int] = set()
        self._lock = threading.Lock()  # one method call at a time
        self._load_lock = threading.Lock()
        self._loader = ThreadPoolExecutor(max_workers=2, thread_name_prefix="cxrbench-load")

    def _method(self, run: int, method: Any, options: dict[str, Any]) -> tuple[Any, MethodSpec]:
        """Run `run`'s method and its spec, loaded on first use; raises CxrbenchError (a failed load is tried again
        on the next call: it may have been for want of memory)."""
        if self.failure is not None:
            raise self.failure
        with self._load_lock:
            if run in self.closed:
                raise CxrbenchError(f"run {run} was closed")
            if run not in self.methods:
                try:
                    loaded = load_method(method, **options) if isinstance(method, str) else method
                    spec = describe(loaded)
                    share_work(loaded, self.shared_folder)
                except CxrbenchError:
                    raise
                except Exception as exc:
                    raise CxrbenchError(
                        f"a Ray worker could not load the method: {type(exc).__name__}: {exc}"
                    ) from None
                self.methods[run] = (loaded, spec)
            return self.methods[run]

    def describe(self, run: int, method: Any, options: dict[str, Any]) -> tuple[CxrbenchError | None, Any]:
        """(failure, None) or (None, (spec, method config, whether it checks pair ids))."""
        try:
            loaded, spec = self._method(run, method, options)
            return None, (spec, method_config(loaded), hasattr(loaded, "check_pairs"))
        except CxrbenchError as exc:
            return exc, None

    def check_pairs(
        self, run: int, method: Any, options: dict[str, Any], pair_ids: list[str], on_error: str
    ) -> tuple[CxrbenchError | None, str | None]:
        try:
            return None, self._method(run, method, options)[0].check_pairs(pair_ids, on_error)
        except CxrbenchError as exc:
            return exc, None

    def drop(self, run: int) -> None:
        """The run is over: free its method; a batch of it still queued here is not computed."""
        with self._load_lock:
            self.closed.add(run)
            self.methods.pop(run, None)

    def compute(
        self, run: int, method: Any, options: dict[str, Any], pair_ids: list[str]
    ) -> tuple[list[tuple[Any, Any]], float, float]:
        """[(the pair's record as this worker sees it, prediction or PairError)], load and method seconds."""
        try:
            loaded, spec = self._method(run, method, options)
        except CxrbenchError as exc:
            return [(None, PairError("method", exc)) for _ in pair_ids], 0.0, 0.0
        samples = [self.samples.get(p) for p in pair_ids]
        missing = [p for p, s in zip(pair_ids, samples, strict=True) if s is None]
        if missing:
            error = DataError(f"the Ray worker's dataset has no pair {missing[0]}: give every node the same data")
            return [(None, PairError("data", error)) for _ in pair_ids], 0.0, 0.0
        start = time.perf_counter()
        images: list[Any] = [None] * len(samples)
        if spec.needs_image:
            images = list(self._loader.map(_image_or_error, samples))
        load_s = time.perf_counter() - start
        with self._lock:
            results, method_s = compute_batch(loaded, spec, samples, images)  # type: ignore[arg-type]
        return [(sample_record(s), r) for s, r in zip(samples, results, strict=True)], load_s, method_s  # type: ignore[arg-type]


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


@dataclass
class _Task:
    """A batch out on an actor: whose (`run` None once that run closed), and whether it must run alone there."""

    actor: int
    run_id: int
    run: RayExecutor | None
    batch: Batch
    isolated: bool


class RayPool:
    """Ray actors computing heatmaps for the runs opened on it (`executor`), all on one dataset. Created by the
    first run, with `workers` actors of `gpus_per_worker` GPUs each (`_worker_shape`); closed by its owner.

    A worker that dies is restarted by Ray (the dataset rebuilt, methods reloaded on use) and its batches sent to
    it again, up to RAY_ATTEMPTS times each; a batch that still failed is run once more alone on an idle worker,
    so that a batch that kills its worker cannot take another down with it: if that fails too, its pairs are
    method errors. Safe to use from several threads (a sweep runs each configuration in one): one lock guards the
    queues and the tasks out, never held while waiting on Ray or reading a result.

    Uses the Ray instance this process is connected to, else connects to `address`, else starts a local one with
    the machine's CPUs and GPUs (and shuts down only what it started).
    """

    def __init__(self, address: str | None = None, gpus_per_worker: float | None = None, workers: int | None = None):
        self.ray = import_ray()
        self.started = connect_ray(address)
        self.shape = (gpus_per_worker, workers)
        self.actors: list[Any] = []
        self.data: tuple[Any, ...] | None = None  # what the actors were built for
        self.closed = False
        self._alive: set[int] = set()
        self._running: dict[Any, _Task] = {}
        self._runs: list[RayExecutor] = []  # open runs, in the order they were opened
        self._ids = itertools.count(1)
        self._sealed = 0  # runs that handed out all their batches
        self._drops: list[Any] = []
        self._records: dict[str, tuple[Any, ...]] = {}  # what the driver sees of each pair, for every run
        self._cond = threading.Condition(threading.RLock())

    def __enter__(self) -> RayPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def executor(
        self,
        method: Any,
        method_options: dict[str, Any],
        dataset: Any,
        dataset_options: dict[str, Any],
        limit: int | None,
        shared_folder: Path | None,
    ) -> RayExecutor:
        """Open a run of `method` on the pool's dataset (the first run chooses it and starts the actors); every
        actor loads the method and must report the same configuration."""
        data = (dataset, dataset_options, limit, shared_folder)
        reference = self.ray.put(method)  # the method travels to the object store once, not with every batch
        with self._cond:
            if self.closed:
                raise CxrbenchError("the Ray workers were shut down")
            if self.data is None:
                self._start(data)
            elif data != self.data:
                raise CxrbenchError(
                    f"a Ray pool serves one dataset: {self.data[:3]}, not {data[:3]}; run the other one separately"
                )
            run = RayExecutor(self, next(self._ids), reference, method_options)
            self._runs.append(run)
        try:
            run.spec, run.config, run.checks_pairs = self._describe(run)
        except BaseException:
            run.close()
            raise
        return run

    def _start(self, data: tuple[Any, ...]) -> None:
        gpus, count = _worker_shape(self.ray.cluster_resources(), *self.shape)
        actor = self.ray.remote(
            num_cpus=1,
            num_gpus=gpus,
            max_restarts=-1,
            max_task_retries=RAY_ATTEMPTS - 1,
            max_concurrency=RAY_DEPTH + 1,
        )(RayWorker)
        self.actors = [actor.remote(*data) for _ in range(count)]
        self._alive = set(range(count))
        self.data = data

    def _describe(self, run: RayExecutor) -> tuple[MethodSpec, dict[str, Any], bool]:
        answers = self.ray.get([run.call(self.actors[i], "describe") for i in sorted(self._alive)])
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

    def first_actor(self) -> Any:
        with self._cond:
            self._check_usable()
            return self.actors[min(self._alive)]

    def submit(self, run: RayExecutor, batch: Batch) -> None:
        with self._cond:
            run.queue.append((batch, False))
            self._dispatch()

    def seal(self, run: RayExecutor) -> None:
        """`run` will submit no more batches."""
        with self._cond:
            if not run.sealed:
                run.sealed = True
                self._sealed += 1
            self._cond.notify_all()

    def _dispatch(self) -> None:
        """Hand queued batches to the least busy workers (RAY_DEPTH at most each), the earliest opened run's first.
        A batch sent again after its worker died runs alone on an idle worker: until one is idle, the least busy
        one is kept for it (later runs' batches go elsewhere). Caller holds the lock."""
        load = {i: 0 for i in self._alive}
        alone = set()
        for task in self._running.values():
            if task.actor in load:
                load[task.actor] += 1
                if task.isolated:
                    alone.add(task.actor)
        kept: set[int] = set()
        for run in self._runs:
            while run.queue:
                batch, isolated = run.queue[0]
                usable = [i for i in load if i not in alone and i not in kept]
                free = [i for i in usable if load[i] < (1 if isolated else RAY_DEPTH)]
                if not free:
                    if isolated and usable:
                        kept.add(min(usable, key=lambda i: (load[i], i)))
                    break
                i = min(free, key=lambda i: (load[i], i))
                run.queue.popleft()
                ref = run.call(self.actors[i], "compute", [s.pair_id for s, _ in batch])
                self._running[ref] = _Task(i, run.id, run, batch, isolated)
                load[i] += 1
                if isolated:
                    alone.add(i)
        self._cond.notify_all()

    def poll(self, run: RayExecutor, block: bool) -> list[Outcome]:
        """`run`'s outcomes finished so far; when `block`, waits until there is one (or the run has nothing left).
        Whichever thread sees a batch finish reads it and files its outcomes under the batch's run."""
        while True:
            with self._cond:
                self._check_usable()
                if block and (run.done or not self._pending(run)):
                    done, run.done = run.done, []
                    return done
                refs = list(self._running)
            if not refs:  # nothing out yet: wait for another thread to dispatch
                with self._cond:
                    self._cond.wait(WAKE_S if block else 0)
                ready = []
            elif block:
                ready, _ = self.ray.wait(refs, num_returns=1, timeout=WAKE_S)
            else:
                ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
            with self._cond:  # take the finished tasks; another thread may have taken some already
                tasks = [(ref, self._running.pop(ref)) for ref in ready if ref in self._running]
                for _, task in tasks:
                    if task.run is not None:
                        task.run.reading += 1
            read = [(task, self._read(ref, task)) for ref, task in tasks]  # results travel without the lock
            with self._cond:
                for task, result in read:
                    self._file(task, result)
                self._dispatch()
                if not block:
                    done, run.done = run.done, []
                    return done

    def _read(self, ref: Any, task: _Task) -> list[Outcome] | Exception:
        """The batch's outcomes (each pair's record checked against the driver's), or the worker's death."""
        try:
            results, load_s, method_s = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as exc:
            return exc
        except self.ray.exceptions.RayError as exc:  # a result that cannot be read: its pairs failed
            error = MethodFailedError(f"a Ray worker's result could not be read: {type(exc).__name__}: {exc}")
            return [(sample, key, PairError("method", error)) for sample, key in task.batch]
        run = task.run
        if run is None:  # its run closed meanwhile
            return []
        run.seconds["load"] += load_s
        run.seconds["method"] += method_s
        outcomes = []
        for (sample, key), (record, prediction) in zip(task.batch, results, strict=True):
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
        if sample.pair_id not in self._records:  # two threads may both compute it: the same value
            self._records[sample.pair_id] = sample_record(sample)
        return self._records[sample.pair_id]

    def _file(self, task: _Task, result: list[Outcome] | Exception) -> None:
        """Put a read batch's outcomes on its run, or send it again after its worker died. Caller holds the lock."""
        run = task.run
        if run is None:  # its run closed: nothing to keep, and the worker (perhaps restarted) drops its method
            if task.actor in self._alive and not self.closed:
                self._drops.append(self.actors[task.actor].drop.remote(task.run_id))
            return
        run.reading -= 1
        if isinstance(result, Exception):
            self._retry(task, run, result)
        else:
            run.done += result

    def _retry(self, task: _Task, run: RayExecutor, exc: Exception) -> None:
        """A batch whose worker died RAY_ATTEMPTS times: run it alone, or (if it was) its pairs are errors."""
        if isinstance(exc, self.ray.exceptions.ActorDiedError):  # the worker is gone for good
            self._alive.discard(task.actor)
        if not task.isolated:
            run.queue.appendleft((task.batch, True))
            return
        error = MethodFailedError(
            f"the Ray worker computing it died {RAY_ATTEMPTS} times, also running it alone ({type(exc).__name__})"
        )
        run.done += [(sample, key, PairError("method", error)) for sample, key in task.batch]

    def _check_usable(self) -> None:
        if self.closed:
            raise CxrbenchError("the Ray workers were shut down; heatmaps computed so far are cached")
        if not self._alive:
            raise CxrbenchError("every Ray worker died; heatmaps computed so far are cached: rerun to resume")

    def _pending(self, run: RayExecutor) -> bool:
        """Batches of `run` queued, out on a worker, being read, or finished but not yet polled."""
        with self._cond:
            out = any(t.run is run for t in self._running.values())
            return bool(run.queue or run.done or run.reading or out)

    def close_run(self, run: RayExecutor) -> None:
        """The run is over: its batches still out are left to finish unread, and the actors drop its method."""
        with self._cond:
            if run not in self._runs:
                return
            self._runs.remove(run)
            run.queue.clear()
            for task in self._running.values():
                if task.run is run:
                    task.run = None
            if not self.closed:
                self._drops += [self.actors[i].drop.remote(run.id) for i in self._alive]
            self._cond.notify_all()

    def wait_for_room(self, started: int, ended: Callable[[], bool]) -> None:
        """Block until the `started` runs have each handed all their batches to the workers and at most one of them
        is still open (it finishes while the next one starts), or until `ended()`: a sweep's cue to start its next
        configuration, so that at most two are loaded at once. A run that fails before handing out its batches is
        seen by `ended()`; the caller makes `wake` run when it turns true."""
        with self._cond:
            self._cond.wait_for(
                lambda: (
                    ended()
                    or self.closed
                    or (self._sealed >= started and len(self._runs) <= 1 and all(not r.queue for r in self._runs))
                )
            )

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def stop(self) -> None:
        """Kill the actors at once; runs still waiting on them stop with one line."""
        with self._cond:
            self.closed = True
            for actor in self.actors:
                self.ray.kill(actor, no_restart=True)
            self._cond.notify_all()

    def close(self) -> None:
        """Stop the actors, after they dropped the methods of closed runs where no batch is out any more (a normal
        end: then Ray reports no failed task), and shut down Ray where this pool started it."""
        if not self.closed and self._drops and not self._running:
            self.ray.wait(self._drops, num_returns=len(self._drops), timeout=DROP_WAIT_S)
        self.stop()
        if self.started:
            self.ray.shutdown()
        self.started = False


class RayExecutor:
    """One run's executor on a RayPool (the runner's interface: submit, poll, pending, seal, close)."""

    def __init__(self, pool: RayPool, run_id: int, method: Any, options: dict[str, Any]):
        self.pool = pool
        self.id = run_id
        self.method = method  # an object reference
        self.options = options
        self.seconds = {"load": 0.0, "method": 0.0}
        self.queue: deque[tuple[Batch, bool]] = deque()  # batches and whether they must run alone
        self.done: list[Outcome] = []
        self.reading = 0  # batches taken off the workers whose results a thread is reading
        self.sealed = False
        self.spec: MethodSpec
        self.config: dict[str, Any]
        self.checks_pairs = False

    def call(self, actor: Any, name: str, *args: Any) -> Any:
        return getattr(actor, name).remote(self.id, self.method, self.options, *args)

    def check_pairs(self, pair_ids: list[str], on_error: str) -> str | None:
        if not self.checks_pairs:
            return None
        failure, note = self.pool.ray.get(self.call(self.pool.first_actor(), "check_pairs", pair_ids, on_error))
        if failure is not None:
            raise failure
        return note

    def expect(self, samples: list[Sample]) -> None:
        """Workers read images themselves: nothing to decode here."""

    def submit(self, batch: Batch) -> None:
        self.pool.submit(self, batch)

    def seal(self) -> None:
        self.pool.seal(self)

    @property
    def pending(self) -> bool:
        return self.pool._pending(self)

    def poll(self, block: bool) -> list[Outcome]:
        return self.pool.poll(self, block)

    def close(self) -> None:
        self.pool.close_run(self)


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
