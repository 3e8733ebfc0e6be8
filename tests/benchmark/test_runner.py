import json
import multiprocessing
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from cxrbench.benchmark.cache import HeatmapCache, RunLock
from cxrbench.benchmark.executors import default_score_workers
from cxrbench.benchmark.runner import SCORE_COLUMNS, run_benchmark
from cxrbench.benchmark.summary import SCHEMA_VERSION, RunSummary
from cxrbench.datasets.demo import DemoDataset
from cxrbench.errors import CxrbenchError, DataError, PairsDataError, RunLockedError

from ..conftest import cxrbench_env


class Counting:
    """Heatmap = image, counting calls; optionally batched."""

    name = "counting"

    def __init__(self):
        self.calls = 0

    def heatmap(self, image, prompt):
        self.calls += 1
        side = min(image.shape)
        return image[:side, :side] ** 2


class Batched(Counting):
    name = "counting"
    batch_size = 5
    batch_calls = 0

    def heatmaps(self, images, prompts):
        self.batch_calls += 1
        return [self.heatmap(im, p) for im, p in zip(images, prompts, strict=True)]


def _run(method, tmp_path, **kwargs):
    return run_benchmark(method, "demo", out=tmp_path, limit=12, n_resamples=100, progress=False, **kwargs)


def test_outputs_and_summary(tmp_path):
    result = _run("oracle-gaussian", tmp_path)
    scores = pd.read_csv(result.run_dir / "scores.csv", dtype={"pair_id": str})
    assert tuple(scores.columns) == SCORE_COLUMNS
    assert list(scores["pair_id"]) == [f"demo-{i:03d}" for i in range(12)]
    summary = RunSummary.read(result.run_dir / "summary.json")
    assert summary == result.summary
    assert json.loads((result.run_dir / "summary.json").read_text())["schema_version"] == SCHEMA_VERSION
    assert summary.n_scored == 12
    assert summary.settings["seed"] == 0
    assert summary.identity.protocol == "cxrbench" and summary.identity.limit == 12
    assert summary.versions["numpy"] == np.__version__
    average = summary.classes["Average"]
    class_means = [v["cnr"]["mean"] for k, v in summary.classes.items() if k != "Average"]
    assert average["cnr"]["mean"] == pytest.approx(np.mean(class_means))
    for name, row in summary.classes.items():
        if name != "Average":
            assert row["n"] == (scores["class_name"] == name).sum()
            assert row["miou"]["mean"] == pytest.approx(scores.loc[scores.class_name == name, "miou"].mean())


def test_cached_heatmaps_are_reused_and_force_recomputes(tmp_path):
    first = Counting()
    a = _run(first, tmp_path)
    assert first.calls == 12
    second = Counting()
    b = _run(second, tmp_path)
    assert second.calls == 0
    pd.testing.assert_frame_equal(a.scores, b.scores)
    third = Counting()
    _run(third, tmp_path, force=True)
    assert third.calls == 12


def test_batched_method_gives_the_same_scores(tmp_path):
    single, batched = Counting(), Batched()
    a = _run(single, tmp_path / "a")
    b = _run(batched, tmp_path / "b")
    assert (batched.batch_calls, batched.calls) == (3, 12)  # 12 pairs in batches of 5
    pd.testing.assert_frame_equal(a.scores, b.scores)


def test_changed_method_config_misses_the_cache(tmp_path):
    class Scaled(Counting):
        def __init__(self, power):
            super().__init__()
            self.power = power

        def config(self):
            return {"power": self.power}

    _run(Scaled(1), tmp_path)
    again, other = Scaled(1), Scaled(2)
    _run(again, tmp_path)
    _run(other, tmp_path, name="squared")
    assert (again.calls, other.calls) == (0, 12)


def test_corrupt_cache_entry_is_recomputed(tmp_path):
    first = _run(Counting(), tmp_path)
    entries = sorted((tmp_path / "demo" / "heatmaps" / "counting").glob("*.npy"))
    entries[0].write_bytes(entries[0].read_bytes()[:-40])  # truncated
    data = bytearray(entries[1].read_bytes())
    data[-3] ^= 0xFF  # one flipped byte
    entries[1].write_bytes(bytes(data))
    method = Counting()
    second = _run(method, tmp_path)
    assert method.calls == 2
    pd.testing.assert_frame_equal(first.scores, second.scores)


def test_second_writer_gets_a_lock_error(tmp_path):
    with RunLock(tmp_path / "demo" / "oracle-gaussian"), pytest.raises(RunLockedError, match="another cxrbench run"):
        _run("oracle-gaussian", tmp_path)
    _run("oracle-gaussian", tmp_path)  # released


def test_bad_heatmap_fails_with_pair_and_keeps_the_cache(tmp_path):
    class BreaksOnFifth(Counting):
        broken = True

        def heatmap(self, image, prompt):
            if self.broken and self.calls == 4:
                self.calls += 1
                return np.full((3, 3), np.nan)
            return super().heatmap(image, prompt)

    with pytest.raises(CxrbenchError, match=r"pair demo-004.*NaN everywhere.*rerun to resume"):
        _run(BreaksOnFifth(), tmp_path)
    assert len(HeatmapCache(tmp_path / "demo" / "heatmaps" / "counting")) == 4  # failures are never cached
    method = BreaksOnFifth()
    method.broken = False
    _run(method, tmp_path)
    assert method.calls == 8


def test_skip_logs_errors_and_completes(tmp_path):
    class Raises(Counting):
        def heatmap(self, image, prompt):
            if "pneumothorax" in prompt:
                raise RuntimeError("model exploded")
            return super().heatmap(image, prompt)

    result = _run(Raises(), tmp_path, on_error="skip")
    errors = pd.read_csv(result.run_dir / "errors.csv")
    assert list(errors["pair_id"]) == ["demo-001", "demo-009"]
    assert errors["error"].str.contains("RuntimeError: model exploded").all()
    assert result.summary.n_errors == 2 and result.summary.n_scored == 10


def test_unreadable_image_is_a_pair_error(tmp_path, cli):
    failed = cli("run", "-m", "fake-lesion", "-d", "fake-tiny", "--no-progress")
    assert failed.returncode == 2
    assert "pair t1" in failed.stderr and "disk on fire" in failed.stderr
    assert "Traceback" not in failed.stderr
    skipped = cli("run", "-m", "fake-lesion", "-d", "fake-tiny", "--on-error", "skip", "--no-progress")
    assert skipped.returncode == 0, skipped.stderr
    errors = pd.read_csv(tmp_path / "runs" / "fake-tiny" / "fake-lesion" / "errors.csv")
    assert list(errors["pair_id"]) == ["t1"] and list(errors["stage"]) == ["load"]


def test_wrong_shape_from_a_full_frame_method(tmp_path):
    class WrongFull(Counting):
        frame = "full"

    with pytest.raises(CxrbenchError, match="full-frame heatmap has shape"):
        _run(WrongFull(), tmp_path)


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path):
    args = [
        sys.executable,
        "-m",
        "cxrbench",
        "run",
        "-m",
        "fake-slow",
        "-d",
        "demo",
        "--limit",
        "24",
        "--n-resamples",
        "300",
        "--no-progress",
        "-o",
        "delay=0.15",
    ]
    env = cxrbench_env(tmp_path)
    log = tmp_path / "calls.log"
    cache = tmp_path / "killed" / "demo" / "heatmaps" / "fake-slow"
    proc = subprocess.Popen(
        [*args, "--out", "killed"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 60
    while time.time() < deadline and len(list(cache.glob("*.npy"))) < 6:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    cached = len(list(cache.glob("*.npy")))
    assert 6 <= cached < 24
    calls_before = len(log.read_text().splitlines())
    subprocess.run([*args, "--out", "killed"], cwd=tmp_path, env=env, check=True, capture_output=True)
    resumed_calls = len(log.read_text().splitlines()) - calls_before
    assert resumed_calls == 24 - cached
    subprocess.run([*args, "--out", "clean"], cwd=tmp_path, env=env, check=True, capture_output=True)
    killed = (tmp_path / "killed" / "demo" / "fake-slow" / "scores.csv").read_text()
    clean = (tmp_path / "clean" / "demo" / "fake-slow" / "scores.csv").read_text()
    assert killed == clean
    assert len(pd.read_csv(tmp_path / "clean" / "demo" / "fake-slow" / "scores.csv")) == 24


def test_demo_dataset_order_is_the_run_order(tmp_path):
    result = _run("center-gaussian", tmp_path)
    expected = [s.pair_id for s in list(DemoDataset())[:12]]
    assert list(result.scores["pair_id"]) == expected


class WrongFullOnLandscape(Counting):
    """A full-frame method whose square maps the scorer refuses on non-square images (a score-stage error);
    records how many scoring processes are alive while it computes."""

    frame = "full"

    def __init__(self):
        super().__init__()
        self.scoring_processes = []

    def heatmap(self, image, prompt):
        self.scoring_processes.append(len(multiprocessing.active_children()))
        return super().heatmap(image, prompt)


class Interrupted(Counting):
    """Ctrl-C while computing the pair after the first `k` (never with None)."""

    def __init__(self, k):
        super().__init__()
        self.k = k

    def heatmap(self, image, prompt):
        if self.calls == self.k:
            raise KeyboardInterrupt
        return super().heatmap(image, prompt)


def test_scoring_processes_give_the_same_files_as_in_process_scoring(tmp_path):
    inline, pooled = WrongFullOnLandscape(), WrongFullOnLandscape()
    a = _run(inline, tmp_path / "a", on_error="skip", score_workers=0)
    b = _run(pooled, tmp_path / "b", on_error="skip", score_workers=2)
    assert 0 < len(a.errors) < 12 and set(a.errors["stage"]) == {"score"}
    for name in ("scores.csv", "errors.csv", "images.csv"):
        assert (a.run_dir / name).read_bytes() == (b.run_dir / name).read_bytes()
    assert max(inline.scoring_processes) == 0 and max(pooled.scoring_processes) >= 1  # scored while computing
    assert b.summary.settings["score_workers"] == 2 and b.summary.timings["score_s"] > 0
    assert multiprocessing.active_children() == []


def test_a_scoring_error_stops_the_run_and_its_processes(tmp_path):
    with pytest.raises(CxrbenchError, match=r"pair demo-001 .*score: .*full-frame heatmap has shape"):
        _run(WrongFullOnLandscape(), tmp_path, score_workers=2)
    assert multiprocessing.active_children() == []


def test_ctrl_c_stops_the_scoring_processes_and_keeps_the_cache(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _run(Interrupted(7), tmp_path, score_workers=2)
    assert multiprocessing.active_children() == []
    assert len(HeatmapCache(tmp_path / "demo" / "heatmaps" / "counting")) == 7
    resumed = _run(Interrupted(None), tmp_path, score_workers=2)  # the same method: its cache
    assert resumed.summary.timings["heatmaps_from_cache"] == 7 and resumed.summary.timings["heatmaps_computed"] == 5
    clean = _run(Counting(), tmp_path / "clean", score_workers=0)
    assert (resumed.run_dir / "scores.csv").read_bytes() == (clean.run_dir / "scores.csv").read_bytes()


def test_score_worker_option_is_checked():
    with pytest.raises(CxrbenchError, match="--score-workers must be a non-negative integer, not -1"):
        run_benchmark("oracle-gaussian", "demo", score_workers=-1)
    assert default_score_workers(12) == 0 and 1 <= default_score_workers(1153) <= 4


@pytest.mark.parametrize(("cores", "expected", "cached"), [(2, 1, 0), (3, 2, 2), (8, 4, 4), (64, 4, 4)])
def test_default_score_workers_for_cached_runs(monkeypatch, cores, expected, cached):
    """One spare core per scoring process, at most 4; a lone process is dropped when every map is cached."""
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    assert default_score_workers(1153) == expected
    assert default_score_workers(1153, cached_only=True) == cached
    assert default_score_workers(63, cached_only=True) == 0


class _PickyBatched:
    """Batches of 4; a prompt naming 'Edema' is a data error (as ldm's tokens=pathology is for its pair)."""

    name = "picky-batched"
    batch_size = 4
    cacheable = False

    def heatmaps(self, images, prompts):
        if any("edema" in p.lower() for p in prompts):
            raise DataError("the prompt does not name the pathology")
        return [np.ones((8, 8), np.float32) * (1 + (i % 2)) for i, _ in enumerate(images)]


class _NamingBatched:
    """Batches of 4; names the prompts holding 'Edema' as bad data (PairsDataError, as ldm's tokens=pathology
    does); each map holds its pair's position in the batch it was computed in, and the batch's size."""

    name = "naming-batched"
    batch_size = 4
    cacheable = False

    def __init__(self):
        self.batches = []

    def heatmaps(self, images, prompts):
        self.batches.append(list(prompts))
        bad = {i: f"prompt {p!r} names edema" for i, p in enumerate(prompts) if "edema" in p.lower()}
        if bad:
            raise PairsDataError(bad)
        return [np.full((8, 8), 10 * len(prompts) + i, np.float32) for i, _ in enumerate(images)]


def test_pairs_a_method_names_as_bad_data_leave_the_rest_one_batch():
    from cxrbench.benchmark.executors import PairError, compute_batch
    from cxrbench.capabilities import describe
    from cxrbench.registry import load_dataset

    samples = [s for s in load_dataset("demo") if "edema" not in s.prompt.lower()][:4]
    edema = next(s for s in load_dataset("demo") if "edema" in s.prompt.lower())
    batch = [samples[3], samples[0], edema, samples[1], samples[2]]  # the first one's image cannot be read
    unreadable = PairError("load", DataError("cannot read its image"))
    method = _NamingBatched()
    results, _ = compute_batch(method, describe(method), batch, [unreadable, *(s.load_image() for s in batch[1:])])
    sent = [s.prompt for s in batch[1:]]
    assert method.batches == [sent, [s.prompt for s in samples[:3]]]  # not one pair at a time
    assert results[0] is unreadable
    assert isinstance(results[2], PairError) and results[2].stage == "data"
    assert str(results[2]) == f"prompt {edema.prompt!r} names edema"
    assert [float(results[i][0, 0]) for i in (1, 3, 4)] == [30, 31, 32]  # one batch of the other 3


def test_a_pairs_data_error_crosses_process_boundaries():
    import pickle

    from cxrbench.benchmark.executors import PairError

    error = pickle.loads(pickle.dumps(PairError("method", PairsDataError({1: "one", 3: "three"}))))
    assert isinstance(error.error, PairsDataError) and error.error.reasons == {1: "one", 3: "three"}
    assert str(error.error) == "one; three"


def test_a_data_error_in_a_batch_stays_with_its_pair(tmp_path):
    from cxrbench.registry import load_dataset

    samples = list(load_dataset("demo"))[:16]
    result = run_benchmark(_PickyBatched(), "demo", out=tmp_path, limit=16, n_resamples=100, progress=False,
                           on_error="skip")  # fmt: skip
    bad = {s.pair_id for s in samples if "edema" in s.prompt.lower()}
    assert bad and len(bad) < 16
    assert set(result.errors["pair_id"]) == bad and set(result.errors["stage"]) == {"data"}
    assert set(result.scores["pair_id"]) == {s.pair_id for s in samples} - bad
