"""Ablation sweeps: a grid of method options, each configuration stored as a named run (docs/ablations.md).

A configuration is a set of `-o KEY=VALUE` method options. Its run is `run_benchmark` with those options and
the configuration's name, so the run identity (method config included) tells configurations apart, a rerun
resumes from the heatmap cache, and `cxrbench table --ablation METHOD` lays the runs out as an ablation table.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxrbench.errors import CxrbenchError

_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class Configuration:
    """One point of a sweep: its run name and the method options it sets (strings, as `-o` gives them)."""

    name: str
    options: dict[str, str]


def split_values(text: str) -> list[str]:
    """`a,b,[3,4,6,7]` -> ["a", "b", "3,4,6,7"]: commas separate values except inside brackets."""
    values, depth, current = [], 0, ""
    for char in text:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise CxrbenchError(f"--grid value {text!r} closes a bracket it never opened")
        if char == "," and depth == 0:
            values.append(current)
            current = ""
        else:
            current += char
    if depth:
        raise CxrbenchError(f"--grid value {text!r} leaves a bracket open")
    values.append(current)
    values = [v.strip() for v in values]
    values = [v[1:-1] if v.startswith("[") and v.endswith("]") else v for v in values]
    if any(not v for v in values):
        raise CxrbenchError(f"--grid value list {text!r} has an empty value")
    return values


def parse_grid(specs: Sequence[str]) -> dict[str, list[str]]:
    """`--grid KEY=V1,V2` options as {key: [values]}, in the order given; a key may appear once."""
    grid: dict[str, list[str]] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise CxrbenchError(f"--grid takes KEY=V1,V2,..., got {spec!r}")
        if key in grid:
            raise CxrbenchError(f"--grid names {key!r} twice; list all its values in one --grid")
        grid[key] = split_values(values)
    return grid


def configuration_name(method: str, options: dict[str, str], protocol: str = "cxrbench") -> str:
    """`<method>@key-value+key-value`, characters a run name cannot hold replaced by '.'; `@published` appended
    under the published protocol, as a plain run's default name is (docs/results.md)."""
    parts = "+".join(f"{k}-{_NAME_CHARS.sub('.', v)}" for k, v in options.items())
    name = f"{method}@{parts}" if parts else method
    return f"{name}@published" if protocol == "published" else name


def cartesian(method: str, grid: dict[str, list[str]], protocol: str = "cxrbench") -> list[Configuration]:
    """Every combination of the grid's values, the first key varying slowest."""
    keys = list(grid)
    configurations = []
    for values in itertools.product(*(grid[k] for k in keys)):
        options = dict(zip(keys, values, strict=True))
        configurations.append(Configuration(configuration_name(method, options, protocol), options))
    return configurations


def _text(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, (str, int)) for v in value):
        return ",".join(str(v) for v in value)
    raise CxrbenchError(f"{where}: a value must be a string, number, boolean or list of them, got {value!r}")


def read_grid_file(path: Path, method: str, protocol: str = "cxrbench") -> list[Configuration]:
    """A YAML (or JSON) grid file: `grid: {KEY: [V1, V2]}` for a cartesian product, or
    `configurations: [{name: NAME, options: {KEY: VALUE}}]` for a list of named configurations (a name given
    in the file is used as it is; generated names follow `configuration_name`)."""
    import yaml

    try:
        content = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CxrbenchError(f"grid file {path}: cannot read it ({exc})") from exc
    if not isinstance(content, dict) or set(content) - {"grid", "configurations"} or len(content) != 1:
        raise CxrbenchError(f"grid file {path}: expected one top-level key, `grid` or `configurations`")
    if "grid" in content:
        grid = content["grid"]
        if not isinstance(grid, dict) or not grid:
            raise CxrbenchError(f"grid file {path}: `grid` must map each option to a list of values")
        values = {}
        for key, options in grid.items():
            items = options if isinstance(options, list) else [options]
            if not items:
                raise CxrbenchError(f"grid file {path}: option {key!r} has no values")
            values[str(key).replace("-", "_")] = [_text(v, f"grid file {path}, option {key!r}") for v in items]
        return cartesian(method, values, protocol)
    entries = content["configurations"]
    if not isinstance(entries, list) or not entries:
        raise CxrbenchError(f"grid file {path}: `configurations` must be a non-empty list")
    configurations = []
    for i, entry in enumerate(entries):
        where = f"grid file {path}, configuration {i + 1}"
        if not isinstance(entry, dict) or not isinstance(entry.get("options", {}), dict):
            raise CxrbenchError(f"{where}: expected {{name: ..., options: {{KEY: VALUE}}}}")
        options = {str(k).replace("-", "_"): _text(v, where) for k, v in (entry.get("options") or {}).items()}
        name = entry.get("name")
        name = str(name) if name else configuration_name(method, options, protocol)
        configurations.append(Configuration(name, options))
    return configurations


def check_configurations(configurations: Sequence[Configuration], fixed: dict[str, str]) -> None:
    """Refuse an empty sweep, two configurations with one name, and a swept key also fixed (with -o or a model
    flag such as --weights)."""
    if not configurations:
        raise CxrbenchError("the sweep has no configuration; give --grid KEY=V1,V2 or --grid-file")
    seen: dict[str, Configuration] = {}
    for configuration in configurations:
        if configuration.name in seen:
            raise CxrbenchError(
                f"two configurations are both named {configuration.name!r} ({seen[configuration.name].options} and "
                f"{configuration.options}); name them in a grid file"
            )
        seen[configuration.name] = configuration
        clash = sorted(set(configuration.options) & set(fixed))
        if clash:
            raise CxrbenchError(
                f"option(s) {', '.join(clash)} are both swept and fixed (with -o or a model flag); keep one"
            )


class GridProgress:
    """One progress bar over every configuration's pairs; each run draws on it through a view (the runner's
    `progress` callable), labelling it with its configuration's name. Runs may draw from several threads."""

    def __init__(self, configurations: int, enabled: bool):
        self.configurations = configurations
        self.enabled = enabled
        self.bar: Any = None
        self.lock = threading.Lock()

    def __call__(self, description: str, total: int) -> _RunView:
        with self.lock:
            if self.bar is None:  # every configuration runs the same pairs
                from tqdm.auto import tqdm

                self.bar = tqdm(
                    total=total * self.configurations, unit="pair", disable=not self.enabled, dynamic_ncols=True
                )
            self.bar.set_description(description)
        return _RunView(self)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclass
class _RunView:
    grid: GridProgress

    def update(self, n: int = 1) -> None:
        with self.grid.lock:
            self.grid.bar.update(n)

    def close(self) -> None:
        """The grid's bar outlives each run."""


def run_sweep(
    method: str,
    dataset: str,
    configurations: Sequence[Configuration],
    *,
    fixed_options: dict[str, str] | None = None,
    progress: bool = True,
    **run_options: Any,
) -> list[Any]:
    """Run every configuration as `run_benchmark(method, dataset, name=..., method_options=fixed | options)`,
    with one progress bar over the whole grid.

    `run_options` go to every run (out, data_root, dataset_options, protocol, limit, seed, ...); a finished
    configuration is not recomputed on a rerun (its heatmaps are cached), so a killed sweep resumes. The runs share
    the LDM's inversion trajectories and unthresholded maps (docs/ldm.md section 6). Locally the configurations run
    one after another; with `executor="ray"` they share one pool of Ray workers (`_on_ray`).
    """
    from cxrbench.benchmark.runner import run_benchmark

    fixed = dict(fixed_options or {})
    check_configurations(configurations, fixed)
    bar = GridProgress(len(configurations), progress)
    force = run_options.pop("force", False)  # clears the caches once, before the first configuration

    def run(i: int, configuration: Configuration, **pool: Any) -> Any:
        options = {**fixed, **configuration.options}
        return run_benchmark(
            method,
            dataset,
            name=configuration.name,
            method_options=options,
            progress=bar,
            force=force and i == 0,
            **run_options,
            **pool,
        )

    try:
        if run_options.get("executor") == "ray":
            return _on_ray(configurations, run, run_options)
        return [run(i, configuration) for i, configuration in enumerate(configurations)]
    finally:
        bar.close()


def _on_ray(configurations: Sequence[Configuration], run: Callable[..., Any], run_options: dict[str, Any]) -> list[Any]:
    """Every configuration on one `RayPool`, each run in a thread of this process: the workers start once and load
    each configuration's method on first use. Configuration i + 1 starts once every started one has handed all its
    batches to the workers (`RayPool.wait_for_room`), so workers never idle between configurations while a
    configuration still reuses the shared work of the ones before it (docs/scaling.md, "Sweeps on Ray"). After a
    failure no further configuration starts; those running finish, and the first failure is raised."""
    from cxrbench.benchmark.ray_executor import RayPool

    cluster = [run_options.pop(key, None) for key in ("ray_address", "gpus_per_worker", "workers")]
    pool = RayPool(*cluster)
    threads = ThreadPoolExecutor(len(configurations), thread_name_prefix="cxrbench-sweep")
    futures: list[Future] = []
    try:
        for i, configuration in enumerate(configurations):
            if futures:
                pool.wait_for_room(i, futures[-1].done)
                if any(f.done() and f.exception() is not None for f in futures):
                    break
            future = threads.submit(run, i, configuration, ray_pool=pool)
            future.add_done_callback(lambda _: pool.wake())
            futures.append(future)
        wait(futures)
        return [future.result() for future in futures]
    finally:
        if not all(future.done() for future in futures):  # interrupted: stop the runs (their maps are cached)
            pool.stop()
        threads.shutdown(wait=True)
        pool.close()
