"""One generic registry for methods and datasets.

Entries are resolved lazily: in-tree ones are "module:attr" strings imported on first use, plugins come from
the entry-point groups `cxrbench.methods` / `cxrbench.datasets` of installed packages, and objects registered
at run time with `register_method` / `register_dataset` (notebooks, scripts). Nothing heavy (torch) is
imported until an entry is actually loaded.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import PurePath
from types import UnionType
from typing import Any, Literal, TypeVar, Union

from cxrbench.errors import CxrbenchError, UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    """A registered name: `target` is "module:attr" or the object itself; `origin` says where it came from."""

    name: str
    target: str | Any
    summary: str = ""
    origin: str = "cxrbench"

    def load(self) -> Any:
        if not isinstance(self.target, str):
            return self.target
        module_name, _, attr = self.target.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except ImportError as exc:
            raise missing_module_error(f"'{self.name}' ({self.origin})", exc) from exc
        except AttributeError as exc:
            raise UnknownNameError(
                f"'{self.name}' ({self.origin}) points to {self.target}, which does not exist"
            ) from exc
        return obj


class Registry:
    """Name -> factory table of one kind ("method" or "dataset")."""

    def __init__(
        self,
        kind: str,
        group: str,
        builtins: dict[str, tuple[str, str]],
        prefixed: dict[str, tuple[str, str]] | None = None,
    ):
        self.kind = kind
        self.group = group
        self._entries = {name: Entry(name, target, summary) for name, (target, summary) in builtins.items()}
        # "prefix:ARG" names: the entry is built with path=ARG (e.g. boxes:predictions.csv)
        self._prefixed = {p: Entry(f"{p}:", t, s) for p, (t, s) in (prefixed or {}).items()}
        self._plugins_loaded = False

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self.group):
            dist = ep.dist.name if ep.dist is not None else "unknown package"
            if ep.name in self._entries:
                other = self._entries[ep.name].origin
                raise UnknownNameError(
                    f"{self.kind} '{ep.name}' is provided twice: by {other} and by the plugin package {dist}. "
                    f"Uninstall one of them or rename the plugin's entry point."
                )
            self._entries[ep.name] = Entry(ep.name, ep.value, f"plugin from {dist}", origin=f"plugin {dist}")

    def register(self, name: str, obj: Any = None, summary: str = "") -> Any:
        """Register `obj` under `name`; without `obj`, return a decorator.

        A built-in or plugin name is never replaced (an error says so); a name registered at run time may be
        registered again (a notebook cell run twice).
        """
        self._load_plugins()
        existing = self._entries.get(name)
        if existing is not None and existing.origin != "runtime":
            raise UnknownNameError(
                f"{self.kind} '{name}' is already provided by {existing.origin}; register yours under another name"
            )

        def add(target: T) -> T:
            self._entries[name] = Entry(name, target, summary or _first_line(target.__doc__), origin="runtime")
            return target

        return add if obj is None else add(obj)

    def unregister(self, name: str) -> None:
        """Remove a name registered at run time (built-in and plugin names stay)."""
        entry = self._entries.get(name)
        if entry is None or entry.origin != "runtime":
            raise UnknownNameError(f"{self.kind} '{name}' was not registered at run time")
        del self._entries[name]

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        """Every registered entry by name, then the "prefix:ARG" families."""
        self._load_plugins()
        return [*(self._entries[n] for n in sorted(self._entries)), *self._prefixed.values()]

    def get(self, name: str) -> Any:
        """The registered factory (class or function) for `name`, with a did-you-mean error."""
        self._load_plugins()
        if name not in self._entries:
            close = difflib.get_close_matches(name, self._entries, n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} '{name}'.{hint} Known {self.kind}s: {', '.join(sorted(self._entries))} "
                f"(`cxrbench list`)."
            )
        return self._entries[name].load()

    def create(self, name: str, **options: Any) -> Any:
        """Build the entry with the given options; options left at None are not passed."""
        prefix, sep, argument = name.partition(":")
        if sep and prefix in self._prefixed:
            if not argument:
                raise UnknownNameError(f"{self.kind} '{name}' needs a path after the colon, e.g. {prefix}:FILE")
            factory, options = self._prefixed[prefix].load(), {**options, "path": argument}
        else:
            factory = self.get(name)
        options = check_options(factory, {k: v for k, v in options.items() if v is not None}, f"{self.kind} '{name}'")
        try:
            return factory(**options)
        except ImportError as exc:  # heavy dependencies are imported when the entry is built
            raise missing_module_error(f"{self.kind} '{name}'", exc) from exc


def check_options(factory: Callable[..., Any], options: dict[str, Any], what: str) -> dict[str, Any]:
    """`options` checked against the parameters of `factory`, text values converted to the parameter's type.

    `-o/-O KEY=VALUE` values arrive as text: each becomes the type of the parameter it fills (its annotation, else
    its default's type), so `allow_unverified_weights=false` is False and `size=abc` for an int is a one-line
    error naming the option (docs/reliability.md, "Options"). Values that are not text are passed unchanged.
    """
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return options
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(options) - set(params))
        if unknown:
            accepted = [p for p in params if p != "self"]
            raise UnknownNameError(
                f"{what} does not take the option(s) {', '.join(unknown)}; it takes: {', '.join(accepted) or 'none'}"
            )
    hints = _type_hints(factory)
    typed = dict(options)
    for key, value in options.items():
        if isinstance(value, str) and key in params:
            kind = hints.get(key, _default_type(params[key]))
            try:
                typed[key] = _from_text(value, kind)
            except ValueError:
                raise CxrbenchError(f"{what}: option {key}={value!r} is not {_describe(kind)}") from None
    return typed


_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def _type_hints(factory: Callable[..., Any]) -> dict[str, Any]:
    """The factory's resolved parameter annotations ({} when they cannot be resolved)."""
    try:
        return typing.get_type_hints(factory.__init__ if isinstance(factory, type) else factory)
    except Exception:  # unresolvable names in a plugin's annotations: the defaults' types decide
        return {}


def _default_type(param: inspect.Parameter) -> Any:
    if param.default is inspect.Parameter.empty or param.default is None:
        return str
    return type(param.default)


def _from_text(text: str, kind: Any) -> Any:
    """`text` as a value of type `kind`: bool, int, finite float, a path, a Literal, or a union of these."""
    if kind in (str, Any, object):
        return text
    if typing.get_origin(kind) is Literal:
        for choice in typing.get_args(kind):
            if str(choice) == text:
                return choice
        raise ValueError(text)
    if typing.get_origin(kind) in (Union, UnionType):
        members = [m for m in typing.get_args(kind) if m is not type(None)]
        if any(m in (str, Any, object) for m in members):
            return text
        for member in members:
            try:
                return _from_text(text, member)
            except ValueError:
                continue
        raise ValueError(text)
    if kind is bool:
        word = text.strip().lower()
        if word in _TRUE + _FALSE:
            return word in _TRUE
        raise ValueError(text)
    if kind is int:
        return int(text)
    if kind is float:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(text)
        return value
    if isinstance(kind, type) and issubclass(kind, PurePath):
        return kind(text)
    raise ValueError(text)


def _describe(kind: Any) -> str:
    """What `_from_text` accepts for `kind`, for error messages."""
    if kind is bool:
        return f"true or false ({'/'.join(_TRUE)} or {'/'.join(_FALSE)})"
    if kind is int:
        return "a whole number"
    if kind is float:
        return "a finite number"
    if typing.get_origin(kind) is Literal:
        return "one of " + ", ".join(repr(c) for c in typing.get_args(kind))
    if typing.get_origin(kind) in (Union, UnionType):
        return " or ".join(_describe(m) for m in typing.get_args(kind) if m is not type(None))
    if isinstance(kind, type) and issubclass(kind, PurePath):
        return "a path"
    return f"a {getattr(kind, '__name__', kind)} (which cannot be given as KEY=VALUE text)"


def missing_module_error(what: str, exc: ImportError) -> UnknownNameError:
    """The one-line error for a heavy dependency that is not installed, naming the extras that bring it."""
    missing = getattr(exc, "name", None) or str(exc)
    return UnknownNameError(
        f"{what} needs the Python module '{missing}', which is not installed. Install the matching extra, "
        "e.g. pip install 'cxrbench[ldm]' (torch, monai, transformers), 'cxrbench[biovil]' (torch, torchvision, "
        "hi-ml-multimodal) or 'cxrbench[all]'."
    )


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n", 1)[0]


METHODS = Registry(
    "method",
    "cxrbench.methods",
    {
        "oracle-gaussian": (
            "cxrbench.baselines.gaussians:OracleGaussian",
            "upper bound: a Gaussian on each ground-truth box (sigma = extent / 3)",
        ),
        "center-gaussian": (
            "cxrbench.baselines.gaussians:CenterGaussian",
            "floor: one image-independent Gaussian at the image centre (sigma = side / 4)",
        ),
        "biovil": (
            "cxrbench.methods.biovil:BioVil",
            "BioViL: hi-ml-multimodal ResNet-50 + CXR-BERT patch-text similarity (needs cxrbench[biovil])",
        ),
        "biovil-t": (
            "cxrbench.methods.biovil:BioVilT",
            "BioViL-T: hi-ml-multimodal temporal image encoder + CXR-BERT similarity (needs cxrbench[biovil])",
        ),
        "ldm-zeroshot": (
            "cxrbench.methods.ldm.zeroshot:LdmZeroShot",
            "frozen MONAI CXR latent diffusion model read through its cross-attention (needs cxrbench[ldm])",
        ),
        "ldm-tuned": (
            "cxrbench.methods.ldm.tuned:LdmTuned",
            "the LDM with prompt-tuned location token embeddings (--checkpoint from `cxrbench tune`; cxrbench[ldm])",
        ),
        "lut-prior": (
            "cxrbench.baselines.lut_prior:LutPrior",
            "the location table's Gaussian(s) for the prompt's location(s), without looking at the image",
        ),
    },
    prefixed={
        "boxes": (
            "cxrbench.baselines.predictions:BoxPredictions",
            "boxes:FILE.csv -- score box predictions made elsewhere (pair_id,x_min,y_min,x_max,y_max), mIoU only",
        ),
        "heatmaps": (
            "cxrbench.baselines.predictions:HeatmapFiles",
            "heatmaps:DIR -- score heatmaps made elsewhere (<pair_id>.npy files or one .npz)",
        ),
    },
)

DATASETS = Registry(
    "dataset",
    "cxrbench.datasets",
    {
        "demo": (
            "cxrbench.datasets.demo:DemoDataset",
            "64 procedurally generated chest-X-ray-like phantoms over the 8 classes, no download",
        ),
        "mscxr": (
            "cxrbench.datasets.mscxr:MSCXRDataset",
            "MS-CXR: 1,153 sentence-box pairs on MIMIC-CXR-JPG images, the sentence as prompt",
        ),
        "mscxr-loc": (
            "cxrbench.datasets.mscxr:MSCXRLocDataset",
            "MS-CXR with each sentence rewritten to '{location} {pathology}'",
        ),
        "vindr": (
            "cxrbench.datasets.vindr:VinDrDataset",
            "VinDr-CXR test set (DICOM), 7 classes, synthetic location prompts from the table",
        ),
    },
)


def register_method(name: str, obj: Any = None, summary: str = "") -> Any:
    """Register a method class or factory under `name` (decorator or call)."""
    return METHODS.register(name, obj, summary)


def register_dataset(name: str, obj: Any = None, summary: str = "") -> Any:
    """Register a dataset class or factory under `name` (decorator or call)."""
    return DATASETS.register(name, obj, summary)


def load_method(name: str, **options: Any) -> Any:
    """Build method `name` with options such as weights, device, dtype, checkpoint."""
    return METHODS.create(name, **options)


def load_dataset(name: str, data_root: str | None = None, **options: Any) -> Any:
    """Build dataset `name` reading from `data_root` (when it needs files)."""
    return DATASETS.create(name, data_root=data_root, **options)
