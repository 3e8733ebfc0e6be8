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
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, TypeVar

from cxrbench.errors import UnknownNameError

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
            raise _missing_module(f"'{self.name}' ({self.origin})", exc) from exc
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
        """Register `obj` under `name`; without `obj`, return a decorator."""

        def add(target: T) -> T:
            self._entries[name] = Entry(name, target, summary or _first_line(target.__doc__), origin="runtime")
            return target

        return add if obj is None else add(obj)

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
        options = {k: v for k, v in options.items() if v is not None}
        check_options(factory, options, f"{self.kind} '{name}'")
        try:
            return factory(**options)
        except ImportError as exc:  # heavy dependencies are imported when the entry is built
            raise _missing_module(f"{self.kind} '{name}'", exc) from exc


def check_options(factory: Callable[..., Any], options: dict[str, Any], what: str) -> None:
    """Raise a clear error when `factory` does not take one of `options`."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(options) - set(params))
    if unknown:
        accepted = [p for p in params if p != "self"]
        raise UnknownNameError(
            f"{what} does not take the option(s) {', '.join(unknown)}; it takes: {', '.join(accepted) or 'none'}"
        )


def _missing_module(what: str, exc: ImportError) -> UnknownNameError:
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
