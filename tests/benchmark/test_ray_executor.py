"""The Ray executor on a real local Ray cluster (2 CPUs, started once for the module, no mocks): the same
scores.csv as the local executor, byte for byte; a worker killed mid-batch and a driver killed mid-run lose
nothing and recompute nothing stored (docs/scaling.md)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

from cxrbench.benchmark.ray_executor import RAY_ATTEMPTS
from cxrbench.benchmark.runner import run_benchmark
from cxrbench.errors import CxrbenchError, UnknownNameError

from ..conftest import require

# A plugin package the Ray workers find through its entry points, as a user's method would be installed on
# every node. Each call appends "pid<TAB>prompt" to $RAY_TEST_LOG (and "pid<TAB>delay<TAB>start<TAB>end" to
# $RAY_TEST_SPANS where set: the Ray workers, which also log "pid<TAB>delay<TAB>load<TAB>time" when they load the
# method); `die_on` kills the worker's own process
# (SIGKILL, no Python clean-up) when it meets that prompt, part-way through a batch: once when a `flag` file
# is given (it is created first), every time otherwise.
PLUGIN = '''
import dataclasses
import os
import signal
import time

import numpy as np

from cxrbench.datasets.demo import DemoDataset


class Drifting(DemoDataset):
    """The demo set, but where $RAY_TEST_DRIFT is set (the Ray workers) pair demo-002 has another prompt."""

    def sample(self, index):
        sample = super().sample(index)
        if index == 2 and os.environ.get("RAY_TEST_DRIFT"):
            sample = dataclasses.replace(sample, prompt=sample.prompt + " (drifted)")
        return sample


class Sleepy:
    """Heatmap = the image's top-left square, squared, after `delay` seconds; batches of 3."""

    name = "ray-sleepy"
    batch_size = 3

    def __init__(self, delay: float = 0.0, die_on: str = "", flag: str = ""):
        self.delay, self.die_on, self.flag = float(delay), die_on, flag
        if os.environ.get("RAY_TEST_SPANS"):
            with open(os.environ["RAY_TEST_SPANS"], "a") as log:
                log.write(f"{os.getpid()}\\t{self.delay}\\tload\\t{time.time()}\\n")

    def config(self):
        return {"delay": self.delay}

    def heatmaps(self, images, prompts):
        return [self.heatmap(image, prompt) for image, prompt in zip(images, prompts)]

    def heatmap(self, image, prompt):
        if prompt == self.die_on and not (self.flag and os.path.exists(self.flag)):
            if self.flag:
                open(self.flag, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        start = time.time()
        time.sleep(self.delay)
        with open(os.environ["RAY_TEST_LOG"], "a") as log:
            log.write(f"{os.getpid()}\\t{prompt}\\n")
        if os.environ.get("RAY_TEST_SPANS"):
            with open(os.environ["RAY_TEST_SPANS"], "a") as log:
                log.write(f"{os.getpid()}\\t{self.delay}\\t{start}\\t{time.time()}\\n")
        side = min(image.shape)
        return image[:side, :side] ** 2
'''
ENTRY_POINTS = "[cxrbench.methods]\nray-sleepy = cxrbench_ray_test_plugin:Sleepy\n"
N = 12


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    root = tmp_path_factory.mktemp("plugin")
    (root / "cxrbench_ray_test_plugin.py").write_text(textwrap.dedent(PLUGIN))
    info = root / "cxrbench_ray_test_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cxrbench-ray-test-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return root


@pytest.fixture(scope="module")
def cluster(plugin):
    """One local Ray cluster for the module; its workers see the plugin and the call log. Without Ray the tests
    that need it skip, unless CI demands the optional stack (CXRBENCH_REQUIRE_TORCH=1, tests/conftest.py)."""
    ray = require("ray")
    log = plugin / "calls.log"
    env = {
        "PYTHONPATH": str(plugin),
        "RAY_TEST_LOG": str(log),
        "RAY_TEST_SPANS": str(plugin / "spans.log"),
        "RAY_TEST_DRIFT": "1",
    }
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": env}, logging_level="ERROR")
    yield {"log": log, "env": env, "address": ray.get_runtime_context().gcs_address}
    ray.shutdown()


@pytest.fixture
def calls(cluster):
    """The (pid, prompt) of each method call made from now on."""
    log, start = cluster["log"], cluster["log"].stat().st_size if cluster["log"].exists() else 0

    def read():
        text = log.read_bytes()[start:].decode() if log.exists() else ""
        return [tuple(line.split("\t")) for line in text.splitlines()]

    return read


@pytest.fixture
def sleepy(plugin, cluster, monkeypatch):
    """The plugin's method class, for runs of the local executor in this process."""
    monkeypatch.syspath_prepend(str(plugin))
    monkeypatch.setenv("RAY_TEST_LOG", cluster["env"]["RAY_TEST_LOG"])
    import cxrbench_ray_test_plugin

    return cxrbench_ray_test_plugin.Sleepy


def _run(method, out, executor, **kwargs):
    kwargs = {"limit": N, "score_workers": 0, **kwargs}
    return run_benchmark(method, "demo", out=out, n_resamples=100, progress=False, executor=executor, **kwargs)


def _scores(result):
    return (result.run_dir / "scores.csv").read_bytes()


def test_ray_run_equals_the_local_run_byte_for_byte(cluster, calls, sleepy, tmp_path):
    local = _run(sleepy(delay=0.05), tmp_path / "local", "local")
    local_calls = calls()
    on_ray = _run("ray-sleepy", tmp_path / "ray", "ray", method_options={"delay": 0.05}, score_workers=2)
    ray_calls = calls()[len(local_calls) :]
    assert _scores(on_ray) == _scores(local)
    assert on_ray.summary.identity == local.summary.identity
    assert on_ray.summary.settings["executor"] == "ray"
    assert on_ray.summary.timings["heatmaps_computed"] == N and on_ray.summary.timings["heatmaps_from_cache"] == 0
    pids = {int(pid) for pid, _ in ray_calls}
    assert len(ray_calls) == N and os.getpid() not in pids and len(pids) == 2  # computed by both workers


def test_sample_methods_run_on_ray_with_the_same_scores(cluster, tmp_path):
    local = _run("oracle-gaussian", tmp_path / "local", "local")
    on_ray = _run("oracle-gaussian", tmp_path / "ray", "ray")
    assert _scores(on_ray) == _scores(local)


def test_cached_pairs_are_never_sent_to_workers(cluster, calls, sleepy, tmp_path):
    _run(sleepy(), tmp_path, "local", limit=5, name="first-5")  # same method: same heatmap cache
    before = len(calls())
    resumed = _run("ray-sleepy", tmp_path, "ray")
    sent = [prompt for _, prompt in calls()[before:]]
    assert resumed.summary.timings["heatmaps_from_cache"] == 5
    assert resumed.summary.timings["heatmaps_computed"] == len(sent) == N - 5
    assert _scores(resumed) == _scores(_run(sleepy(), tmp_path / "clean", "local"))


def test_a_worker_killed_mid_batch_loses_and_repeats_nothing_stored(cluster, calls, sleepy, tmp_path):
    clean = _run(sleepy(), tmp_path / "clean", "local")
    prompts = list(clean.scores["prompt"])
    assert len(set(prompts)) == N
    victim = prompts[4]  # the second pair of the second batch of 3
    before = len(calls())
    killed = _run(
        "ray-sleepy",
        tmp_path / "killed",
        "ray",
        method_options={"die_on": victim, "flag": str(tmp_path / "died")},
    )
    assert (tmp_path / "died").exists()  # a worker process did die
    assert _scores(killed) == _scores(clean)
    assert killed.summary.timings["heatmaps_computed"] == N
    cache = tmp_path / "killed" / "demo" / "heatmaps" / "ray-sleepy"
    assert len(list(cache.glob("*.npy"))) == N
    made = [prompt for _, prompt in calls()[before:]]
    # the killed batch's first pair ran before the kill and again on the retry; nothing else ran twice
    assert sorted(made) == sorted([*prompts, prompts[3]])


def test_a_killed_driver_is_resumed_from_the_cache(cluster, calls, sleepy, tmp_path):
    script = textwrap.dedent(
        f"""
        import ray
        from cxrbench.benchmark.runner import run_benchmark

        ray.init(address={cluster["address"]!r}, runtime_env={{"env_vars": {cluster["env"]!r}}}, logging_level="ERROR")
        run_benchmark("ray-sleepy", "demo", out={str(tmp_path)!r}, limit={N}, n_resamples=100, progress=False,
                      executor="ray", method_options={{"delay": 0.4}}, score_workers=0)
        """
    )
    driver = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cache = tmp_path / "demo" / "heatmaps" / "ray-sleepy"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(cache.glob("*.npy"))) < 4 and driver.poll() is None:
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    stored = len(list(cache.glob("*.npy")))
    assert 4 <= stored < N
    resumed = _run("ray-sleepy", tmp_path, "ray", method_options={"delay": 0.4})
    assert resumed.summary.timings["heatmaps_from_cache"] == stored
    assert resumed.summary.timings["heatmaps_computed"] == N - stored
    assert _scores(resumed) == _scores(_run(sleepy(), tmp_path / "clean", "local"))


def test_a_worker_that_reads_other_data_is_a_data_error_for_that_pair(cluster, sleepy, tmp_path):
    import cxrbench_ray_test_plugin as plugin

    result = run_benchmark(
        sleepy(),
        plugin.Drifting(),
        out=tmp_path,
        limit=6,
        n_resamples=100,
        progress=False,
        executor="ray",
        score_workers=0,
        on_error="skip",
    )
    assert list(result.errors["pair_id"]) == ["demo-002"] and list(result.errors["stage"]) == ["data"]
    assert "a Ray worker reads other data for pair demo-002 than the driver" in result.errors["error"][0]
    assert len(list((tmp_path / "demo" / "heatmaps" / "ray-sleepy").glob("*.npy"))) == 5  # never cached


def test_without_ray_the_run_starts_a_local_instance_and_shuts_it_down(cluster, plugin, tmp_path):
    script = textwrap.dedent(
        f"""
        import json, ray
        from cxrbench.benchmark.runner import run_benchmark

        result = run_benchmark("ray-sleepy", "demo", out={str(tmp_path)!r}, limit=4, n_resamples=100,
                               progress=False, executor="ray", score_workers=0)
        print(json.dumps([ray.is_initialized(), result.summary.timings["heatmaps_computed"]]))
        """
    )
    env = {**os.environ, **cluster["env"]}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == [False, 4]


def test_worker_failures_are_one_clear_error(cluster, tmp_path):
    with pytest.raises(UnknownNameError, match="unknown method 'no-such-method'"):
        _run("no-such-method", tmp_path, "ray")
    with pytest.raises(CxrbenchError, match="--gpus-per-worker 1: the Ray cluster has 0 GPUs"):
        _run("oracle-gaussian", tmp_path, "ray", gpus_per_worker=1)
    with pytest.raises(CxrbenchError, match="--workers 3: the Ray cluster fits 1 to 2 workers"):
        _run("oracle-gaussian", tmp_path, "ray", workers=3)
    with pytest.raises(CxrbenchError, match="--executor must be 'local' or 'ray'"):
        _run("oracle-gaussian", tmp_path, "dask")
    with pytest.raises(CxrbenchError, match="--ray-address, --workers applies to --executor ray only"):
        _run("oracle-gaussian", tmp_path, "local", ray_address="auto", workers=2)


def test_a_batch_that_always_kills_its_worker_is_a_method_error_for_its_pairs_only(cluster, sleepy, tmp_path):
    clean = _run(sleepy(), tmp_path / "clean", "local")
    victim = list(clean.scores["prompt"])[7]  # in the third batch of 3; the fourth is queued on the same worker
    result = _run("ray-sleepy", tmp_path / "ray", "ray", method_options={"die_on": victim}, on_error="skip")
    assert list(result.errors["pair_id"]) == ["demo-006", "demo-007", "demo-008"]
    assert set(result.errors["stage"]) == {"method"}
    assert result.errors["error"].str.contains(f"died {RAY_ATTEMPTS} times, also running it alone").all()
    kept = clean.scores[~clean.scores["pair_id"].isin(result.errors["pair_id"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(result.scores, kept)


def test_importing_cxrbench_and_the_runner_never_imports_ray_or_torch():
    code = "import sys, cxrbench, cxrbench.benchmark.runner; print(sorted({'ray', 'torch'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_an_unreachable_ray_address_is_one_clear_error(tmp_path):
    require("ray")
    code = textwrap.dedent(
        f"""
        from cxrbench.benchmark.runner import run_benchmark
        from cxrbench.errors import CxrbenchError
        try:
            run_benchmark("oracle-gaussian", "demo", out={str(tmp_path)!r}, limit=2, executor="ray",
                          ray_address="127.0.0.1:1")
        except CxrbenchError as exc:
            print(exc)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "cannot reach Ray at --ray-address 127.0.0.1:1: Connection refused" in done.stdout, done.stderr[-2000:]


def test_a_sweep_on_ray_equals_the_local_sweep(cluster, tmp_path):
    from cxrbench.benchmark.sweep import cartesian, parse_grid, run_sweep

    configurations = cartesian("oracle-gaussian", parse_grid(["k=2,4"]))
    kwargs = {"limit": N, "n_resamples": 100, "progress": False, "score_workers": 0}
    local = run_sweep("oracle-gaussian", "demo", configurations, out=tmp_path / "local", **kwargs)
    remote = run_sweep("oracle-gaussian", "demo", configurations, out=tmp_path / "ray", executor="ray", **kwargs)
    for a, b in zip(local, remote, strict=True):
        assert _scores(a) == _scores(b) and b.summary.settings["executor"] == "ray"
    assert _scores(local[0]) != _scores(local[1])
    import ray

    assert ray.is_initialized()  # the sweep used the running cluster and left it running


def test_a_sweep_on_ray_overlaps_configurations_on_one_set_of_workers(cluster, tmp_path):
    """Three configurations of 5 batches on 2 workers (2 batches queued on each): the second loads once the first
    has sent out all its batches (so after its first batch) and starts while the first's last batch runs; the
    third loads only once the first is over (two configurations at most); all on the same two worker processes.
    (test_a_sweep_on_ray_equals_the_local_sweep compares a sweep's scores with a local one's.)"""
    from cxrbench.benchmark.sweep import cartesian, parse_grid, run_sweep

    spans = cluster["env"]["RAY_TEST_SPANS"]
    offset = os.path.getsize(spans) if os.path.exists(spans) else 0
    configurations = cartesian("ray-sleepy", parse_grid(["delay=0.5,0.51,0.52"]))
    kwargs = {"limit": 15, "n_resamples": 100, "progress": False, "score_workers": 0, "executor": "ray"}
    results = run_sweep("ray-sleepy", "demo", configurations, out=tmp_path, **kwargs)
    assert [len(r.scores) for r in results] == [15, 15, 15]
    with open(spans, "rb") as log:
        rows = [line.split("\t") for line in log.read()[offset:].decode().splitlines()]
    loads = {d: min(float(t) for _, delay, kind, t in rows if kind == "load" and delay == d) for d in ("0.51", "0.52")}
    pairs = {
        d: [(float(start), float(end)) for _, delay, start, end in rows if start != "load" and delay == d]
        for d in ("0.5", "0.51")
    }
    assert len(pairs["0.5"]) == len(pairs["0.51"]) == 15
    first_ends = sorted(end for _, end in pairs["0.5"])
    assert sum(end < loads["0.51"] for end in first_ends) >= 3  # loaded after the first's first batch at least
    assert min(start for start, _ in pairs["0.51"]) < first_ends[-1]  # began before the first ended
    assert loads["0.52"] > first_ends[-1]  # the third waited for the first to end
    assert len({pid for pid, *_ in rows}) == 2  # all on the same two workers


def test_a_failing_configuration_on_ray_stops_the_sweep_and_keeps_what_ran(cluster, tmp_path):
    """The second of three configurations cannot load its method: the first finishes and is stored, the third
    never starts, the failure is raised, and the workers leave no thread or run behind."""
    import threading

    from cxrbench.benchmark.sweep import cartesian, parse_grid, run_sweep

    configurations = cartesian("center-gaussian", parse_grid(["size=64,0,32"]))
    kwargs = {"limit": N, "n_resamples": 100, "progress": False, "score_workers": 0, "executor": "ray"}
    with pytest.raises(CxrbenchError, match="option size must be a positive integer"):
        run_sweep("center-gaussian", "demo", configurations, out=tmp_path, **kwargs)
    runs = tmp_path / "demo"
    assert (runs / "center-gaussian@size-64" / "scores.csv").is_file()
    assert not (runs / "center-gaussian@size-0").exists() and not (runs / "center-gaussian@size-32").exists()
    assert not [t for t in threading.enumerate() if t.name.startswith("cxrbench-sweep")]


def test_a_batch_sent_again_runs_alone_ahead_of_later_runs_batches(cluster):
    """Run A (opened first) gets a batch back to run alone (as after its worker died RAY_ATTEMPTS times) while run
    B's six batches fill both workers: a worker is kept for A's batch as soon as it has room, so A's batch starts
    before B's last batch does, not after B's queue is empty."""
    from cxrbench.benchmark.ray_executor import RayPool
    from cxrbench.registry import load_dataset

    spans = cluster["env"]["RAY_TEST_SPANS"]
    offset = os.path.getsize(spans) if os.path.exists(spans) else 0
    samples = list(load_dataset("demo"))[:18]
    with RayPool() as pool:
        first = pool.executor("ray-sleepy", {"delay": 0.31}, "demo", {}, 18, None)
        later = pool.executor("ray-sleepy", {"delay": 0.3}, "demo", {}, 18, None)
        for i in range(0, 18, 3):
            later.submit([(s, None) for s in samples[i : i + 3]])
        with pool._cond:  # as _retry does after the third death
            first.queue.append(([(s, None) for s in samples[:3]], True))
        first.seal()
        later.seal()
        outcomes = {}
        for run in (first, later):
            while run.pending:
                outcomes[run.id] = outcomes.get(run.id, 0) + len(run.poll(block=True))
            run.close()
    assert outcomes == {first.id: 3, later.id: 18}
    with open(spans, "rb") as log:
        rows = [line.split("\t") for line in log.read()[offset:].decode().splitlines()]
    starts = {d: sorted(float(a) for _, delay, a, _ in rows if a != "load" and delay == d) for d in ("0.31", "0.3")}
    assert len(starts["0.31"]) == 3 and len(starts["0.3"]) == 18
    assert starts["0.31"][0] < starts["0.3"][15]  # before the last of B's batches began
