"""Run identity, result sets swapped as a whole, typed summaries and what `table` will put side by side."""

import json
import os
import shutil
import stat
import subprocess

import numpy as np
import pandas as pd
import pytest

from cxrbench.benchmark import store
from cxrbench.benchmark.bootstrap import bootstrap_ci
from cxrbench.benchmark.compare import read_scores
from cxrbench.benchmark.runner import run_benchmark
from cxrbench.benchmark.summary import RunSummary, SummaryError
from cxrbench.errors import CxrbenchError, DataError, RunConflictError
from cxrbench.leaderboard.tables import build_leaderboard, to_markdown


def _run(method, out, **kwargs):
    kwargs = {"limit": 8, "n_resamples": 100, "progress": False, **kwargs}
    return run_benchmark(method, "demo", out=out, **kwargs)


class Counting:
    """Heatmap = the image's square; counts its calls (reset by each test)."""

    name = "counting"
    calls = 0

    def heatmap(self, image, prompt):
        Counting.calls += 1
        side = min(image.shape)
        return image[:side, :side]


def _result_files(folder):
    return {name: (folder / name).read_bytes() for name in store.RESULT_FILES if (folder / name).exists()}


def test_a_run_of_another_identity_is_refused_and_the_stored_run_kept(tmp_path):
    full = _run("center-gaussian", tmp_path, limit=None)
    before = _result_files(full.run_dir)
    with pytest.raises(RunConflictError, match=r"differs in limit, manifest_sha256\).*--name LABEL.*--overwrite"):
        _run("center-gaussian", tmp_path, limit=5)
    assert _result_files(full.run_dir) == before
    assert _run("center-gaussian", tmp_path, limit=None, seed=3).summary.identity == full.summary.identity


def test_name_stores_beside_and_overwrite_replaces(tmp_path):
    _run("center-gaussian", tmp_path)
    beside = _run("center-gaussian", tmp_path, limit=5, name="first-five")
    assert beside.run_dir == tmp_path / "demo" / "first-five"
    runs = store.find_runs(tmp_path).runs
    assert sorted(r.name for r in runs) == ["center-gaussian", "first-five"]
    replaced = _run("center-gaussian", tmp_path, limit=5, overwrite=True)
    assert RunSummary.read(replaced.run_dir / store.SUMMARY).n_pairs == 5


def test_method_config_difference_is_named(tmp_path):
    class Scaled:
        name = "scaled"

        def __init__(self, power):
            self.power = power

        def config(self):
            return {"power": self.power}

        def heatmap(self, image, prompt):
            side = min(image.shape)
            return image[:side, :side] ** self.power

    _run(Scaled(1), tmp_path)
    with pytest.raises(RunConflictError, match=r"differs in method_config\.power\)"):
        _run(Scaled(2), tmp_path)


def test_protocols_get_their_own_folders_and_share_the_heatmap_cache(tmp_path):
    Counting.calls = 0
    ours = _run(Counting(), tmp_path)
    published = _run(Counting(), tmp_path, protocol="published")
    assert Counting.calls == 8  # the second run read every heatmap from the cache
    assert (ours.run_dir.name, published.run_dir.name) == ("counting", "counting@published")
    assert published.summary.protocol == "published"
    runs = store.find_runs(tmp_path).runs
    with pytest.raises(CxrbenchError, match=r"different protocols .*tabulate one at a time with --protocol"):
        build_leaderboard(runs)
    board = build_leaderboard(runs, protocol="published")
    assert board.methods == ("counting@published",)
    assert board.metrics == ("cnr", "miou", "auc_binned")  # the AUC the published tables report, as `run` shows
    assert to_markdown(board).splitlines()[-1].startswith("Scored with the published protocol (docs/protocol.md).")


class _DiskFull:
    """Make store.write_atomic fail at its n-th call from now (as a full disk would)."""

    def __init__(self, monkeypatch, n):
        self.left = n
        self.real = store.write_atomic
        monkeypatch.setattr(store, "write_atomic", self)

    def __call__(self, path, data):
        self.left -= 1
        if self.left == 0:
            raise OSError(28, "No space left on device", str(path))
        return self.real(path, data)


def _visible_set(folder):
    """(pairs in scores.csv, the summary's n_scored, its limit), read as a user's script would: by file name."""
    summary = json.loads((folder / store.SUMMARY).read_text())
    return len(pd.read_csv(folder / store.SCORES)), summary["n_scored"], summary["identity"]["limit"]


@pytest.mark.parametrize("failing_write", [1, 2, 3])
def test_a_crash_while_writing_the_new_set_leaves_the_previous_set(tmp_path, monkeypatch, failing_write):
    old = _run("center-gaussian", tmp_path, limit=None)
    before = _result_files(old.run_dir)
    _DiskFull(monkeypatch, failing_write)
    with pytest.raises(OSError, match="No space left"):
        _run("center-gaussian", tmp_path, limit=5, overwrite=True)
    assert _result_files(old.run_dir) == before
    monkeypatch.undo()
    new = _run("center-gaussian", tmp_path, limit=5, overwrite=True)
    assert _visible_set(new.run_dir) == (5, 5, 5)
    assert len(list((new.run_dir / ".sets").iterdir())) == 1  # the unfinished set was deleted


def _count_switches(monkeypatch, crash_at=None):
    """Count (and optionally crash at) the renames and links that change what a run folder shows."""
    calls = []
    real = {name: getattr(os, name) for name in ("replace", "rename", "symlink")}

    def wrap(name):
        def call(*args, **kwargs):
            calls.append(name)
            if len(calls) == crash_at:
                raise KeyboardInterrupt  # killed right here
            return real[name](*args, **kwargs)

        return call

    for name in real:
        monkeypatch.setattr(os, name, wrap(name))
    return calls


def _kill_the_switch_then_rerun(monkeypatch, out, folder, crash_at):
    """Replace the 64-pair run in `folder` by a 5-pair one, killed at the `crash_at`-th rename or link: the old set
    or the new one shows, whole; a rerun leaves the new set alone in the folder."""
    _count_switches(monkeypatch, crash_at)
    with pytest.raises(KeyboardInterrupt):
        _run("center-gaussian", out, limit=5, overwrite=True)
    monkeypatch.undo()
    assert _visible_set(folder) in ((64, 64, None), (5, 5, 5)), crash_at
    (found,) = store.find_runs(out).runs
    assert found.n_scored == _visible_set(folder)[1], crash_at
    _run("center-gaussian", out, limit=5, overwrite=True)
    assert _visible_set(folder) == (5, 5, 5)
    assert len(list((folder / ".sets").iterdir())) == 1


def test_a_kill_at_any_point_of_the_switch_shows_one_whole_set(tmp_path, monkeypatch):
    _run("center-gaussian", tmp_path / "probe", limit=None)
    calls = _count_switches(monkeypatch)
    _run("center-gaussian", tmp_path / "probe", limit=5, overwrite=True)
    monkeypatch.undo()
    assert len(calls) >= 5
    for crash_at in range(1, len(calls) + 1):
        out = tmp_path / f"crash-{crash_at}"
        folder = _run("center-gaussian", out, limit=None).run_dir
        _kill_the_switch_then_rerun(monkeypatch, out, folder, crash_at)


def test_a_foreign_current_link_is_refused(tmp_path):
    a = _run("center-gaussian", tmp_path)
    (a.run_dir / ".current").unlink()
    (a.run_dir / ".current").symlink_to("../other")
    with pytest.raises(CxrbenchError, match=r"points to \.\./other, not to a result set"):
        store.find_runs(tmp_path)


def test_errors_file_of_an_older_run_does_not_survive_a_clean_run(tmp_path):
    class Flaky:
        name = "flaky"
        fail = True

        def config(self):
            return {}

        def heatmap(self, image, prompt):
            if self.fail and "edema" in prompt:
                raise RuntimeError("no")
            side = min(image.shape)
            return image[:side, :side]

    first = _run(Flaky(), tmp_path, on_error="skip", limit=None)
    assert (first.run_dir / store.ERRORS).exists()
    method = Flaky()
    method.fail = False
    _run(method, tmp_path, limit=None)
    assert not (first.run_dir / store.ERRORS).exists()


def _copy_run(src, dst, edit=None):
    dst.mkdir(parents=True)
    record = json.loads((src / store.SUMMARY).read_text())
    if edit:
        edit(record)
    (dst / store.SUMMARY).write_text(json.dumps(record))


def test_table_refuses_runs_on_other_data_unless_allowed(tmp_path):
    a = _run("center-gaussian", tmp_path)

    def other_data(record):
        record["identity"]["manifest_sha256"] = "f" * 64
        record["name"] = "oracle-like"

    _copy_run(a.run_dir, tmp_path / "demo" / "oracle-like", other_data)
    runs = store.find_runs(tmp_path).runs
    with pytest.raises(CxrbenchError, match=r"different versions of the dataset .*--allow-mixed"):
        build_leaderboard(runs)
    board = build_leaderboard(runs, allow_mixed=True)
    text = to_markdown(board)
    assert "*oracle-like [data ffffffff]* CNR" in text  # a copy of center-gaussian: a bound, in italics
    assert f"*center-gaussian [data {a.summary.identity.manifest_sha256[:8]}]* CNR" in text
    assert "different versions of the dataset" in text.splitlines()[-1]


def test_table_refuses_runs_of_other_scorer_versions(tmp_path):
    a = _run("center-gaussian", tmp_path)

    def older(record):
        record["identity"]["scorer_version"] -= 1
        record["name"] = "old-run"

    _copy_run(a.run_dir, tmp_path / "demo" / "old-run", older)
    with pytest.raises(CxrbenchError, match=r"different scorer versions .*rerun old-run"):
        build_leaderboard(store.find_runs(tmp_path).runs)


def test_two_runs_with_one_name_are_an_error_naming_both(tmp_path):
    a = _run("center-gaussian", tmp_path / "one")
    _copy_run(a.run_dir, tmp_path / "two" / "demo" / "center-gaussian")
    with pytest.raises(CxrbenchError, match=r"two stored runs named 'center-gaussian' on 'demo': .*one.*and .*two"):
        store.find_runs(tmp_path)


def test_a_summary_in_a_parent_folder_does_not_hide_the_runs_below(tmp_path):
    a = _run("center-gaussian", tmp_path / "runs")
    _copy_run(a.run_dir, tmp_path / "elsewhere", lambda r: r.update(name="copy"))
    (tmp_path / store.SUMMARY).write_text((tmp_path / "elsewhere" / store.SUMMARY).read_text())
    names = sorted(r.name for r in store.find_runs(tmp_path / "runs").runs)
    assert names == ["center-gaussian"]
    with pytest.raises(CxrbenchError, match="two stored runs named 'copy'"):
        store.find_runs(tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[]", "holds a JSON list, not a run summary"),
        (b"{}", "has no schema_version"),
        (b"\xff\xfe{", "is not UTF-8"),
        (b'{"schema_version": 2, "name": "x"', "is not valid JSON"),
        (b'{"schema_version": 2, "name": "x"}', "missing or has malformed field"),
        (b'{"schema_version": 1, "dataset": "demo"}', "has schema_version 1"),
    ],
)
def test_malformed_summaries_are_skipped_with_their_name(tmp_path, content, message):
    _run("center-gaussian", tmp_path)
    bad = tmp_path / "demo" / "broken"
    bad.mkdir()
    (bad / store.SUMMARY).write_bytes(content)
    found = store.find_runs(tmp_path)
    assert [r.name for r in found.runs] == ["center-gaussian"]
    (reason,) = found.skipped
    assert str(bad / store.SUMMARY) in reason and message in reason
    with pytest.raises(SummaryError, match=message):
        RunSummary.read(bad / store.SUMMARY)


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("identity", "scorer_version"), "x", "identity.scorer_version"),
        (("identity", "manifest_sha256"), None, "identity.manifest_sha256"),
        (("classes",), [], "classes"),
        (("classes", "Edema", "cnr", "mean"), "high", "classes.Edema"),
        (("classes", "Edema", "n"), "8", "classes.Edema"),
        (("n_scored",), True, "n_scored"),
    ],
)
def test_summaries_with_wrongly_typed_fields_are_skipped(tmp_path, path, value, field):
    a = _run("center-gaussian", tmp_path, limit=None)
    record = json.loads((a.run_dir / store.SUMMARY).read_text())
    target = record
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    _copy_run(a.run_dir, tmp_path / "demo" / "typed", lambda r: r.clear() or r.update({**record, "name": "typed"}))
    found = store.find_runs(tmp_path)
    assert [r.name for r in found.runs] == ["center-gaussian"]
    (reason,) = found.skipped
    assert "malformed field" in reason and field in reason


def test_an_unreadable_stored_run_is_not_replaced_silently(tmp_path):
    a = _run("center-gaussian", tmp_path)
    (a.run_dir / store.SUMMARY).write_text("{}")
    with pytest.raises(RunConflictError, match=r"cannot be read .*has no schema_version.*--overwrite"):
        _run("center-gaussian", tmp_path)
    assert _run("center-gaussian", tmp_path, overwrite=True).summary.n_scored == 8


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_resamples": 99}, "--n-resamples must be an integer from 100 to 1,000,000"),
        ({"n_resamples": 10**11}, "--n-resamples must be an integer from 100 to 1,000,000"),
        ({"seed": -1}, "--seed must be a non-negative integer"),
        ({"protocol": "paper"}, "--protocol must be one of cxrbench, published"),
        ({"name": "../x"}, "cannot name a run"),
        ({"name": ".hidden"}, "cannot name a run"),
        ({"name": "heatmaps"}, "cannot name a run"),
        ({"name": "a|b"}, "cannot name a run"),
        ({"name": "two words"}, "cannot name a run"),
        ({"name": "-x"}, "cannot name a run"),
        ({"name": "summary.json"}, "cannot name a run"),
        ({"limit": 0}, "--limit must be a positive integer"),
    ],
)
def test_bad_options_fail_before_any_work(tmp_path, options, message):
    class Never:
        name = "never"

        def heatmap(self, image, prompt):
            raise AssertionError("no heatmap may be computed before the options are checked")

    with pytest.raises(CxrbenchError, match=message):
        _run(Never(), tmp_path, **options)
    assert not (tmp_path / "demo").exists()


def test_a_config_that_is_not_json_fails_before_any_work(tmp_path):
    class PathConfig:
        name = "path-config"

        def config(self):
            return {"weights": tmp_path, "scale": np.float32(2.0), "bad": float("nan")}

        def heatmap(self, image, prompt):
            raise AssertionError("no heatmap may be computed before the config is checked")

    with pytest.raises(CxrbenchError, match=r"method 'path-config' config\(\): key 'bad' is not a JSON value"):
        _run(PathConfig(), tmp_path)
    assert not (tmp_path / "demo").exists()


def test_a_limit_beyond_the_dataset_is_no_limit(tmp_path):
    whole = _run("center-gaussian", tmp_path, limit=None)
    again = _run("center-gaussian", tmp_path, limit=1000)
    assert again.summary.identity == whole.summary.identity


def test_a_dataset_without_pairs_is_an_error(tmp_path):
    class Empty:
        name = "empty"
        classes = ("Edema",)

        def __iter__(self):
            return iter(())

    with pytest.raises(DataError, match=r"dataset 'empty' yielded no pairs .*check the data root and the -O options"):
        run_benchmark("center-gaussian", Empty(), out=tmp_path, progress=False)
    assert not (tmp_path / "empty").exists()


def test_no_scored_pair_is_an_error_and_writes_nothing(tmp_path):
    class Fails:
        name = "fails"

        def heatmap(self, image, prompt):
            raise RuntimeError("broken model")

    with pytest.raises(DataError, match=r"no pair of 'demo' could be scored .*broken model"):
        _run(Fails(), tmp_path, on_error="skip")
    assert not (tmp_path / "demo" / "fails" / store.SUMMARY).exists()


@pytest.mark.parametrize("value", [0.1, 1 / 3, 0.7])
def test_an_interval_always_contains_its_mean(value):
    # constant values: every resample mean is the mean summed in another order, off by an ulp or not at all
    values = np.full(37, value)
    mean, low, high = bootstrap_ci(values, n_resamples=100)
    assert low <= mean <= high
    assert high - low < 1e-15


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_result_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        result = _run("center-gaussian", tmp_path)
    finally:
        os.umask(old)
    for name in (store.SCORES, store.SUMMARY, store.IMAGES):
        assert stat.S_IMODE((result.run_dir / name).stat().st_mode) == mode, name


def test_cli_one_line_errors_for_paths(cli, tmp_path):
    (tmp_path / "afile").write_text("x")
    as_out = cli("run", "-m", "center-gaussian", "-d", "demo", "--limit", "4", "--out", "afile", "--no-progress")
    assert as_out.returncode == 2 and "Traceback" not in as_out.stderr
    assert "afile" in as_out.stderr.strip().splitlines()[-1]
    assert cli("run", "-m", "center-gaussian", "-d", "demo", "--limit", "4", "--no-progress").returncode == 0
    (tmp_path / "out.tex").mkdir()
    table = cli("table", "runs", "--output", "out.tex")
    assert table.returncode == 2 and "out.tex" in table.stderr and "is a folder" in table.stderr
    export = cli("export-pairs", "-d", "demo", "--output", "out.tex")
    assert export.returncode == 2 and "Traceback" not in export.stderr and "out.tex" in export.stderr
    seed = cli("run", "-m", "center-gaussian", "-d", "demo", "--seed", "-1", "--no-progress")
    assert seed.returncode == 2 and "--seed" in seed.stderr


def test_cli_run_conflict_and_protocol(cli, tmp_path):
    assert cli("run", "-m", "center-gaussian", "-d", "demo", "--limit", "6", "--no-progress").returncode == 0
    again = cli("run", "-m", "center-gaussian", "-d", "demo", "--limit", "5", "--no-progress")
    assert again.returncode == 2 and "differs in limit" in again.stderr and "Traceback" not in again.stderr
    published = cli(
        "run", "-m", "center-gaussian", "-d", "demo", "--limit", "6", "--protocol", "published", "--no-progress"
    )
    assert published.returncode == 0, published.stderr
    assert (
        published.stdout.strip().splitlines()[-1].startswith("Scored with the published protocol (docs/protocol.md).")
    )
    mixed = cli("table", "runs")
    assert mixed.returncode == 2 and "different protocols" in mixed.stderr
    assert "center-gaussian@published" in cli("table", "runs", "--protocol", "published").stdout


def test_a_cache_entry_that_is_a_folder_stops_the_run_before_any_work(tmp_path):
    Counting.calls = 0
    first = _run(Counting(), tmp_path)
    before = _result_files(first.run_dir)
    cache = tmp_path / "demo" / "heatmaps" / "counting"
    entry = sorted(cache.glob("*.npy"))[0]
    entry.unlink()
    entry.mkdir()
    with pytest.raises(CxrbenchError, match=f"heatmap cache entry {entry} is not a file; move it away"):
        _run(Counting(), tmp_path)
    assert Counting.calls == 8
    assert _result_files(first.run_dir) == before
    entry.rmdir()
    second = _run(Counting(), tmp_path)
    assert Counting.calls == 9
    pd.testing.assert_frame_equal(first.scores, second.scores)


def test_messages_say_what_was_cached(tmp_path):
    class Uncached:
        name = "uncached"
        cacheable = False

        def heatmap(self, image, prompt):
            return np.full((4, 4), np.nan)

    with pytest.raises(CxrbenchError) as info:
        _run(Uncached(), tmp_path)
    assert "kept in" not in str(info.value) and "--on-error skip" in str(info.value)
    assert not _run("oracle-gaussian", tmp_path).summary.settings["cached"]


@pytest.mark.parametrize(
    ("heatmap", "message"),
    [
        (np.zeros((0, 0)), r"must be a non-empty 2-D array \(H, W\), got shape \(0, 0\)"),
        (np.full((3, 3), 1e39), r"holds values beyond float32's range"),
        (np.full((3, 3), np.inf), "contains infinite values"),
        (np.full((3, 3), np.nan), "is NaN everywhere"),
    ],
)
def test_bad_heatmaps_are_named_for_what_they_are(heatmap, message):
    from cxrbench.benchmark.protocol import check_heatmap
    from cxrbench.errors import MethodOutputError

    with pytest.raises(MethodOutputError, match=message):
        check_heatmap(heatmap)


def _link_summary_to(tmp_path, target):
    """A stored run whose summary.json is replaced by a link to `target`, beside a good run."""
    _run("center-gaussian", tmp_path)
    bad = tmp_path / "demo" / "odd"
    bad.mkdir()
    (bad / store.SUMMARY).symlink_to(target)
    return bad / store.SUMMARY


@pytest.mark.parametrize("kind", ["device", "fifo", "folder"])
def test_a_summary_that_is_not_a_regular_file_is_refused_without_reading(tmp_path, kind):
    if kind == "fifo":
        target = tmp_path / "pipe"
        os.mkfifo(target)  # opening it for reading would wait for a writer forever
    elif kind == "folder":
        target = tmp_path / "folder"
        target.mkdir()
    else:
        target = "/dev/zero"  # reading it would never end
    link = _link_summary_to(tmp_path, target)
    found = store.find_runs(tmp_path)
    assert [r.name for r in found.runs] == ["center-gaussian"]
    (reason,) = found.skipped
    assert str(link) in reason
    with pytest.raises(SummaryError, match="is not a regular file"):
        RunSummary.read(link)


def test_a_huge_summary_is_refused_without_reading_it(tmp_path):
    from cxrbench.benchmark.summary import MAX_BYTES

    huge = tmp_path / "huge.json"
    with huge.open("wb") as handle:
        handle.truncate(MAX_BYTES + 1)  # sparse: no disk used
    link = _link_summary_to(tmp_path, huge)
    with pytest.raises(SummaryError, match=f"is {MAX_BYTES + 1} bytes, more than a summary's {MAX_BYTES}"):
        RunSummary.read(link)
    (reason,) = store.find_runs(tmp_path).skipped
    assert "more than a summary's" in reason


def test_a_heatmaps_folder_that_is_not_a_cache_is_reported_not_searched(tmp_path):
    Counting.calls = 0
    counted = _run(Counting(), tmp_path / "runs")
    assert (tmp_path / "runs" / "demo" / store.HEATMAPS / "counting").is_dir()  # a real cache: not reported
    assert store.find_runs(tmp_path).skipped == []
    _copy_run(counted.run_dir, tmp_path / "old" / store.HEATMAPS / "demo" / "kept", lambda r: r.update(name="kept"))
    found = store.find_runs(tmp_path)
    assert [r.name for r in found.runs] == ["counting"]
    (reason,) = found.skipped
    assert reason.startswith(f"{tmp_path / 'old' / store.HEATMAPS}: not searched for runs")
    assert "rename it" in reason


def test_runs_in_symlinked_folders_are_found_each_once(tmp_path):
    """Runs linked in from scratch space are listed; a run reached by two links, or a link back up to the runs
    folder (a loop), is searched once."""
    scratch = _run("center-gaussian", tmp_path / "scratch").run_dir
    local = _run("oracle-gaussian", tmp_path / "runs").run_dir
    (local.parent / "from-scratch").symlink_to(scratch, target_is_directory=True)
    (tmp_path / "runs" / "scratch-copy").symlink_to(tmp_path / "scratch", target_is_directory=True)
    (local.parent / "loop").symlink_to(tmp_path / "runs", target_is_directory=True)
    found = store.find_runs(tmp_path / "runs")
    assert sorted(r.name for r in found.runs) == ["center-gaussian", "oracle-gaussian"]
    assert found.skipped == []
    linked = next(r for r in found.runs if r.name == "center-gaussian")
    assert linked.path.parent.resolve() == scratch.resolve() and linked.n_scored == 8
    assert linked.path.is_relative_to(tmp_path / "runs")


def test_result_links_are_relative_so_a_copy_keeping_links_is_its_own_run(tmp_path):
    original = _run("center-gaussian", tmp_path / "runs").run_dir
    before = _result_files(original)
    links = [original / store._CURRENT, *(original / name for name in store.RESULT_FILES)]
    assert all(link.is_symlink() and not os.path.isabs(os.readlink(link)) for link in links)
    shutil.copytree(tmp_path / "runs", tmp_path / "copy", symlinks=True)  # as `cp -r` / `cp -a`
    copy = tmp_path / "copy" / "demo" / "center-gaussian"
    (found,) = store.find_runs(tmp_path / "copy").runs
    assert found.path.parent == copy and _visible_set(copy) == (8, 8, 8)
    _run("center-gaussian", tmp_path / "copy", limit=5, overwrite=True)
    assert _visible_set(copy) == (5, 5, 5)
    assert _result_files(original) == before and len(list((original / ".sets").iterdir())) == 1


def _copy_following_links(src, dst):
    """`cp -rL src dst`: every link replaced by a copy of what it points to. A set without errors has a dangling
    errors.csv link, which cp names and leaves out (exit status 1)."""
    done = subprocess.run(["cp", "-rL", str(src), str(dst)], capture_output=True, text=True, check=False)
    problems = [line for line in done.stderr.splitlines() if f"{store.ERRORS}'" not in line]
    assert done.returncode in (0, 1) and not problems, done.stderr


def test_a_copy_that_followed_the_links_is_read_as_it_is(tmp_path):
    original = _run("center-gaussian", tmp_path / "runs", limit=None).run_dir
    _copy_following_links(tmp_path / "runs", tmp_path / "copy")
    copy = tmp_path / "copy" / "demo" / "center-gaussian"
    assert (copy / store._CURRENT).is_dir() and not (copy / store._CURRENT).is_symlink()
    assert not (copy / store.SUMMARY).is_symlink()
    (found,) = store.find_runs(tmp_path / "copy").runs
    assert found.path.parent == copy and found.n_scored == 64
    assert store.stored_summary(copy).identity == store.stored_summary(original).identity
    assert _visible_set(copy) == _visible_set(original)
    (copy / store._CURRENT / store.SCORES).write_text("pair_id\n")  # the run folder's own files are read
    assert len(read_scores(found, ("cnr",))) == 64


def test_a_run_in_a_copy_that_followed_the_links_keeps_or_replaces_the_stored_run(tmp_path):
    original = _run("center-gaussian", tmp_path / "runs", limit=None).run_dir
    before = _result_files(original)
    _copy_following_links(tmp_path / "runs", tmp_path / "copy")
    copy = tmp_path / "copy" / "demo" / "center-gaussian"
    with pytest.raises(RunConflictError, match="differs in limit"):
        _run("center-gaussian", tmp_path / "copy", limit=5)
    assert _visible_set(copy) == (64, 64, None)  # the stored run was read, and kept
    again = _run("center-gaussian", tmp_path / "copy", limit=None, seed=3)  # same identity: replaced
    assert _visible_set(again.run_dir) == (64, 64, None)
    _run("center-gaussian", tmp_path / "copy", limit=5, overwrite=True)
    assert _visible_set(copy) == (5, 5, 5)
    assert (copy / store._CURRENT).is_symlink() and len(list((copy / ".sets").iterdir())) == 1
    assert all((copy / name).is_symlink() for name in store.RESULT_FILES)
    assert _result_files(original) == before


def test_a_kill_while_a_copy_is_made_a_set_again_shows_one_whole_set(tmp_path, monkeypatch):
    """The copied run's files are made a set of the copy before the new set replaces it: a kill at any rename
    or link of that, or of the switch after it, leaves the old set or the new one, whole and readable."""
    _run("center-gaussian", tmp_path / "runs", limit=None)
    _copy_following_links(tmp_path / "runs", tmp_path / "probe")
    calls = _count_switches(monkeypatch)
    _run("center-gaussian", tmp_path / "probe", limit=5, overwrite=True)
    monkeypatch.undo()
    for crash_at in range(1, len(calls) + 1):
        out = tmp_path / f"crash-{crash_at}"
        _copy_following_links(tmp_path / "runs", out)
        folder = out / "demo" / "center-gaussian"
        _kill_the_switch_then_rerun(monkeypatch, out, folder, crash_at)


@pytest.mark.parametrize(
    ("patched", "error"),
    [
        ("tempfile.mkstemp", PermissionError(13, "Permission denied", "/out/.tmp-abc123")),
        ("os.fsync", OSError(28, "No space left on device")),
        ("os.replace", OSError(28, "No space left on device", "/out/.tmp-abc123", "/out/table.csv")),
    ],
)
def test_a_write_error_names_the_file_asked_for_and_leaves_no_temporary_file(tmp_path, monkeypatch, patched, error):
    target = tmp_path / "table.csv"
    module, name = patched.split(".")

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr({"os": os, "tempfile": store.tempfile}[module], name, fail)
    with pytest.raises(CxrbenchError) as caught:
        store.write_atomic(target, "a,b\n")
    monkeypatch.undo()
    assert str(caught.value) == f"cannot write {target}: {error.strerror}"
    assert isinstance(caught.value, OSError) and caught.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []


def test_a_write_error_through_a_link_names_the_link(tmp_path, monkeypatch):
    (tmp_path / "real.csv").write_text("old\n")
    (tmp_path / "link.csv").symlink_to("real.csv")
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(CxrbenchError, match=r"cannot write .*link\.csv: No space left on device$"):
        store.write_atomic(tmp_path / "link.csv", "new\n")
    monkeypatch.undo()
    assert (tmp_path / "real.csv").read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.csv", "real.csv"]
