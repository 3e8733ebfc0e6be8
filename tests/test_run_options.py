"""`cxrbench run` and `cxrbench sweep` take one set of shared options, handed to run_benchmark alike."""

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from cxrbench.benchmark import runner, sweep
from cxrbench.cli import cli
from cxrbench.errors import CxrbenchError

SHARED = {
    "--method", "--dataset", "--data-root", "--weights", "--checkpoint", "--device", "--dtype",
    "--allow-unverified-weights", "--option", "-o", "--dataset-option", "-O", "--out", "--limit", "--protocol",
    "--seed", "--n-resamples", "--force", "--on-error", "--overwrite", "--no-progress", "--executor",
    "--ray-address", "--gpus-per-worker", "--workers", "--score-workers", "--score-device", "-m", "-d", "-h", "--help",
}  # fmt: skip
OWN = {"run": {"--name"}, "sweep": {"--grid", "--grid-file", "--dry-run"}}

ARGS = (
    "-m", "oracle-gaussian", "-d", "demo", "--data-root", "data", "--weights", "w", "--device", "cuda:1",
    "--dtype", "bfloat16", "--allow-unverified-weights", "-o", "steps=40", "-o", "batch-size=4", "-o", "dtype=float16",
    "-O", "split=test", "--out", "o", "--limit", "5", "--protocol", "published", "--seed", "3", "--n-resamples", "200",
    "--force", "--on-error", "skip", "--overwrite", "--no-progress", "--score-workers", "2", "--score-device", "cuda",
)  # fmt: skip
EXPECTED = {
    "data_root": "data",
    "method_options": {
        "weights": Path("w"),
        "device": "cuda:1",
        "dtype": "float16",  # -o wins over --dtype
        "allow_unverified_weights": True,
        "steps": "40",
        "batch_size": "4",
    },  # no checkpoint: options not given are left out
    "dataset_options": {"split": "test"},
    "out": Path("o"),
    "protocol": "published",
    "limit": 5,
    "seed": 3,
    "n_resamples": 200,
    "force": True,
    "overwrite": True,
    "on_error": "skip",
    "progress": False,
    "executor": "local",
    "ray_address": None,
    "gpus_per_worker": None,
    "workers": None,
    "score_workers": 2,
    "score_device": "cuda",
}
DEFAULTS = {
    "data_root": None,
    "method_options": {},
    "dataset_options": {},
    "out": Path("runs"),
    "protocol": "cxrbench",
    "limit": None,
    "seed": 0,
    "n_resamples": 10_000,
    "force": False,
    "overwrite": False,
    "on_error": "fail",
    "progress": True,
    "executor": "local",
    "ray_address": None,
    "gpus_per_worker": None,
    "workers": None,
    "score_workers": None,
    "score_device": None,
}


class Stop(Exception):
    """Raised by the recorders: the call was seen, nothing runs."""


@pytest.fixture
def calls(monkeypatch):
    """Record what `run` hands run_benchmark and what `sweep` hands run_sweep, instead of running them."""
    seen: dict[str, tuple] = {}

    def recorder(name):
        def record(*args, **kwargs):
            seen[name] = (args, kwargs)
            raise Stop

        return record

    monkeypatch.setattr(runner, "run_benchmark", recorder("run"))
    monkeypatch.setattr(sweep, "run_sweep", recorder("sweep"))
    return seen


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def _options(help_text: str) -> set[str]:
    """The option names the Options section lists (`  -o, --option KEY=VALUE  help` -> -o, --option)."""
    lines = help_text.split("Options:\n", 1)[1].splitlines()
    heads = [line.strip().split("  ")[0] for line in lines if line.strip().startswith("-")]
    return {word for head in heads for word in re.split(r"[,\s]+", head) if word.startswith("-")}


def test_run_and_sweep_list_the_same_shared_options():
    listed = {}
    for command in ("run", "sweep"):
        result = _invoke(command, "--help")
        assert result.exit_code == 0, result.output
        listed[command] = _options(result.output)
        assert listed[command] == SHARED | OWN[command]
    params = {c: {p.name: p for p in cli.commands[c].params} for c in ("run", "sweep")}
    shared = set(params["run"]) - {"name"}
    assert shared == set(params["sweep"]) - {"grid", "grid_file", "dry_run"}
    for name in shared:  # names, type, default, help text, flags
        assert params["run"][name].to_info_dict() == params["sweep"][name].to_info_dict(), name


def test_run_hands_the_options_to_run_benchmark(calls):
    result = _invoke("run", *ARGS, "--name", "n")
    assert isinstance(result.exception, Stop), result.output
    assert calls["run"] == (("oracle-gaussian", "demo"), {"name": "n", **EXPECTED})
    assert isinstance(_invoke("run", "-m", "oracle-gaussian", "-d", "demo").exception, Stop)
    assert calls["run"] == (("oracle-gaussian", "demo"), {"name": None, **DEFAULTS})


def test_sweep_hands_the_same_options_to_every_run(calls):
    result = _invoke("sweep", *ARGS, "--grid", "k=2,4")
    assert isinstance(result.exception, Stop), result.output
    (method, dataset, configurations), kwargs = calls["sweep"]
    assert (method, dataset) == ("oracle-gaussian", "demo")
    assert [c.options for c in configurations] == [{"k": "2"}, {"k": "4"}]
    assert kwargs.pop("fixed_options") == EXPECTED["method_options"]
    assert kwargs == {k: v for k, v in EXPECTED.items() if k != "method_options"}
    assert "on_configuration" not in kwargs


@pytest.mark.parametrize("swept", ["device", "weights", "allow_unverified_weights", "batch_size"])
def test_sweep_refuses_a_key_both_swept_and_fixed(calls, swept):
    result = _invoke("sweep", *ARGS, "--grid", f"{swept}=a,b", "--dry-run")
    assert isinstance(result.exception, CxrbenchError)
    assert f"option(s) {swept} are both swept and fixed" in str(result.exception)


def test_sweep_may_sweep_a_model_option_left_unset(calls):
    listed = _invoke("sweep", "-m", "oracle-gaussian", "-d", "demo", "--grid", "checkpoint=a,b", "--dry-run")
    assert listed.exit_code == 0, listed.output
    assert listed.output.split() == ["oracle-gaussian@checkpoint-a", "checkpoint=a", "oracle-gaussian@checkpoint-b",
                                     "checkpoint=b"]  # fmt: skip
    swept = _invoke("sweep", "-m", "oracle-gaussian", "-d", "demo", "--grid", "device=cpu,cuda")
    assert isinstance(swept.exception, Stop), swept.output
    assert calls["sweep"][1]["fixed_options"] == {}


@pytest.mark.parametrize("command", [("run",), ("sweep", "--grid", "k=2")], ids=["run", "sweep"])
@pytest.mark.parametrize("option", ["--score-device", "--device"])
@pytest.mark.parametrize("blank", ["", "  "], ids=["empty", "spaces"])
def test_a_blank_device_is_refused(calls, command, option, blank):
    result = _invoke(*command, "-m", "oracle-gaussian", "-d", "demo", option, blank)
    assert result.exit_code == 2 and not calls
    assert f"Invalid value for '{option}': give a device" in result.output


def test_sweep_force_recomputes_every_configuration(cli, tmp_path):
    log = tmp_path / "calls.log"
    sweep_args = ("sweep", "-m", "fake-slow", "-d", "demo", "--grid", "delay=0,0.001", "--limit", "2",
                  "--n-resamples", "100", "--no-progress")  # fmt: skip
    counts = []
    for extra in ((), (), ("--force",), ()):
        done = cli(*sweep_args, *extra)
        assert done.returncode == 0, done.stderr
        counts.append(len(log.read_text().splitlines()))
    # 2 configurations x 2 pairs; cached on the rerun; all recomputed once with --force (the caches are cleared
    # before the first configuration, not by each: the second would delete the first's maps); all cached again
    assert counts == [4, 4, 8, 8]


def test_sweep_hands_allow_unverified_weights_to_the_method(cli):
    done = cli("sweep", "-m", "oracle-gaussian", "-d", "demo", "--grid", "k=2", "--allow-unverified-weights")
    assert done.returncode == 2
    assert "does not take the option(s) allow_unverified_weights" in done.stderr
