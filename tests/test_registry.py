import subprocess
import sys

import pandas as pd
import pytest

from cxrbench.errors import UnknownNameError
from cxrbench.registry import DATASETS, METHODS, Registry, load_method, register_method

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


def test_runtime_registration():
    @register_method("test-runtime-method")
    class Constant:
        """A constant map."""

        name = "test-runtime-method"

        def heatmap(self, image, prompt):
            return image * 0

    assert METHODS.get("test-runtime-method") is Constant
    assert "test-runtime-method" in METHODS.names()


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
