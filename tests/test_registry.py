from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Literal

import pandas as pd
import pytest

from cxrbench.errors import CxrbenchError, UnknownNameError
from cxrbench.registry import DATASETS, METHODS, Registry, load_dataset, load_method, register_method

from .conftest import FAKE_PLUGIN, cxrbench_env


def test_did_you_mean():
    with pytest.raises(UnknownNameError, match="Did you mean 'oracle-gaussian'"):
        METHODS.get("oracle-gausian")
    with pytest.raises(UnknownNameError, match=r"unknown dataset 'vindrr'.*Known datasets: demo"):
        DATASETS.get("vindrr")


def test_unknown_option_names_the_accepted_ones():
    with pytest.raises(UnknownNameError, match=r"does not take the option\(s\) weights; it takes: k"):
        load_method("oracle-gaussian", weights="/x")


def test_none_options_are_not_passed():
    assert load_method("oracle-gaussian", weights=None, device=None).k == 3.0


def test_lazy_entry_with_missing_module_says_what_to_install():
    registry = Registry("method", "cxrbench.none", {"ghost": ("no_such_module_xyz:Thing", "")})
    with pytest.raises(UnknownNameError, match=r"no_such_module_xyz.*pip install"):
        registry.get("ghost")


def test_runtime_registration_never_replaces_a_built_in_and_can_be_undone():
    class Constant:
        """A constant map."""

        name = "test-runtime-method"

        def heatmap(self, image, prompt):
            return image * 0

    assert register_method("test-runtime-method")(Constant) is Constant
    try:
        assert METHODS.get("test-runtime-method") is Constant
        assert "test-runtime-method" in METHODS.names()
        register_method("test-runtime-method", Constant)  # a notebook cell run twice
    finally:
        METHODS.unregister("test-runtime-method")
    assert "test-runtime-method" not in METHODS.names()
    with pytest.raises(UnknownNameError, match="'oracle-gaussian' is already provided by cxrbench"):
        register_method("oracle-gaussian", Constant)
    with pytest.raises(UnknownNameError, match="was not registered at run time"):
        METHODS.unregister("oracle-gaussian")
    assert METHODS.get("oracle-gaussian").__name__ == "OracleGaussian"


def test_plugin_entry_points_run_end_to_end(tmp_path, cli):
    listed = cli("list")
    assert listed.returncode == 0, listed.stderr
    assert "fake-lesion" in listed.stdout and "plugin from fake-cxr-plugin" in listed.stdout
    assert "fake-tiny" in listed.stdout
    result = cli(
        "run", "--method", "fake-lesion", "--dataset", "demo", "--limit", "16", "--n-resamples", "200", "--no-progress"
    )
    assert result.returncode == 0, result.stderr
    scores = pd.read_csv(tmp_path / "runs" / "demo" / "fake-lesion" / "scores.csv")
    assert len(scores) == 16
    assert scores["auc"].between(0, 1).all()


def test_plugin_name_clash_with_builtin_is_reported(tmp_path):
    dist = tmp_path / "clash-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: clash\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[cxrbench.methods]\noracle-gaussian = json:dumps\n")
    result = subprocess.run(
        [sys.executable, "-m", "cxrbench", "list"],
        env=cxrbench_env(tmp_path, True, tmp_path),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "provided twice" in result.stderr and "clash" in result.stderr
    assert "Traceback" not in result.stderr
    assert FAKE_PLUGIN.exists()


class Typed:
    """A factory with one parameter of each kind an option can fill (string annotations, as in the package)."""

    def __init__(
        self,
        allow_unverified_weights: bool = False,
        size: int = 256,
        k: float = 3.0,
        lut: Path | None = None,
        mode: Literal["rules", "radgraph"] = "rules",
        device: str = "cpu",
        batch_size: int | None = None,
        weights: str | Path | None = None,
    ):
        self.options = {k: v for k, v in locals().items() if k != "self"}


class Untyped:
    """No annotations (a quick plugin): the default's type decides."""

    def __init__(self, flag=False, n=1, label=None):
        self.options = {"flag": flag, "n": n, "label": label}


def _typed_registry():
    registry = Registry("method", "cxrbench.none", {})
    registry.register("typed", Typed)
    registry.register("untyped", Untyped)
    return registry


@pytest.mark.parametrize(
    ("text", "value"),
    [("false", False), ("FALSE", False), ("0", False), ("No", False), ("true", True), ("1", True), ("YES", True)],
)
def test_text_bool_options_mean_what_they_say(text, value):
    built = _typed_registry().create("typed", allow_unverified_weights=text)
    assert built.options["allow_unverified_weights"] is value
    assert _typed_registry().create("untyped", flag=text).options["flag"] is value


def test_text_options_take_the_type_of_their_parameter():
    built = _typed_registry().create(
        "typed", size="64", k="2.5", lut="table.json", mode="radgraph", device="cuda:1", batch_size="8", weights="w"
    )
    assert built.options == {
        "allow_unverified_weights": False,
        "size": 64,
        "k": 2.5,
        "lut": Path("table.json"),
        "mode": "radgraph",
        "device": "cuda:1",
        "batch_size": 8,
        "weights": "w",
    }
    assert type(built.options["size"]) is int and type(built.options["k"]) is float
    assert _typed_registry().create("untyped", n="7", label="x").options == {"flag": False, "n": 7, "label": "x"}
    # the package's own factories, whose annotations are strings (from __future__ import annotations)
    assert load_method("center-gaussian", size="64").size == 64
    assert len(list(load_dataset("demo", n_per_class="1"))) == 8


def test_typed_python_values_are_passed_unchanged():
    lut = Path("x.json")
    built = _typed_registry().create("typed", allow_unverified_weights=True, size=3, k=1, lut=lut)
    assert built.options["allow_unverified_weights"] is True
    assert built.options["size"] == 3 and built.options["k"] == 1 and built.options["lut"] is lut


@pytest.mark.parametrize(
    ("option", "text", "expected"),
    [
        ("allow_unverified_weights", "flase", "true or false"),
        ("allow_unverified_weights", "", "true or false"),
        ("size", "abc", "a whole number"),
        ("size", "2.5", "a whole number"),
        ("k", "nan", "a finite number"),
        ("k", "1e999", "a finite number"),
        ("mode", "RULES", "one of 'rules', 'radgraph'"),
        ("batch_size", "many", "a whole number"),
    ],
)
def test_wrong_text_option_is_one_line_naming_option_and_type(option, text, expected):
    with pytest.raises(CxrbenchError) as info:
        _typed_registry().create("typed", **{option: text})
    message = str(info.value)
    assert f"method 'typed': option {option}={text!r} is not {expected}" in message
    assert "\n" not in message


def test_wrong_option_values_of_real_factories(cli):
    with pytest.raises(CxrbenchError, match=r"dataset 'mscxr-loc': option extractor='radgrap' is not one of"):
        load_dataset("mscxr-loc", extractor="radgrap")
    result = cli("run", "-m", "center-gaussian", "-d", "demo", "-o", "size=abc", "--limit", "2", "--no-progress")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: method 'center-gaussian': option size='abc' is not a whole number"
    result = cli("run", "-m", "center-gaussian", "-d", "demo", "-O", "n_per_class=two", "--no-progress")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: dataset 'demo': option n_per_class='two' is not a whole number"
