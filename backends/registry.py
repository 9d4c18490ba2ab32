"""One registry of backends: the built-ins, the ``harness.backends`` entry points, and
``--plugin MODULE`` modules that define ``BACKENDS = [MyBackend, ...]``."""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Iterable, Mapping, Sequence
from importlib.metadata import entry_points
from types import ModuleType
from typing import TypeVar

from backends.base import Backend
from harness.core.errors import InputError

# module:class of each built-in backend, in registration order. They are imported when a
# registry is loaded, not with this module: a worker process imports only its own backend's
# module, not every runtime's (torch._dynamo alone takes seconds to import).
BUILTIN: tuple[str, ...] = (
    "backends.reference:ReferenceBackend", "backends.eager:EagerBackend",
    "backends.torchscript:TorchScriptBackend", "backends.compiled:CompileBackend",
    "backends.compiled:CudaGraphsCompileBackend", "backends.onnxruntime_backend:OnnxRuntimeBackend",
    "backends.onnxruntime_backend:OnnxRuntimeTensorRTBackend",
    "backends.openvino_backend:OpenVinoBackend", "backends.aot_inductor:AotInductorBackend",
    "backends.torch_int8:TorchInt8Backend",
)
BASELINE = "eager"  # every speedup is this backend's time over the other's
ENTRY_POINT_GROUP = "harness.backends"
T = TypeVar("T")


def suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    return f" (did you mean {', '.join(close)}?)" if close else ""


class Registry:
    """An immutable name -> backend class mapping."""

    def __init__(self, backends: Mapping[str, type[Backend]]) -> None:
        self._backends = dict(backends)

    def names(self) -> list[str]:
        return list(self._backends)

    def default_for(self, device: str, dtype: str = "fp32") -> tuple[str, ...]:
        """What a run without --backends runs on ``device`` in ``dtype``, in registration order."""
        return tuple(name for name, cls in self._backends.items()
                     if cls.in_default_set and device in cls.devices and dtype in cls.dtypes)

    def listed_for(self, names: Iterable[str], device: str) -> tuple[str, ...]:
        """An explicit list on ``device``: a backend that does not serve it stays (its rows
        say why), unless it asks to be left out off its devices. One that does not serve a
        dtype stays too: its rows say why."""
        return tuple(name for name in names if self._backends[name].listed_off_device
                     or device in self._backends[name].devices)

    def versions(self) -> dict[str, str | None]:
        """The versions of every library behind a registered backend."""
        return {k: v for cls in self._backends.values() for k, v in cls.versions().items()}

    def gemm_gflops(self, device: str, threads: int) -> dict[str, float]:
        """Each backend's own GEMM rate, where it has one (engine name -> GFLOP/s)."""
        return {name: rate for name, cls in self._backends.items()
                if device in cls.devices and (rate := cls.gemm_gflops(device, threads)) is not None}

    def machine_facts(self) -> dict[str, dict]:
        """What each backend's runtime reports about the machine, where it reports anything."""
        return {name: facts for name, cls in self._backends.items() if (facts := cls.machine_facts())}

    def create(self, name: str) -> Backend:
        if name not in self._backends:
            raise InputError(f"unknown backend {name!r}; expected one of "
                             f"{', '.join(self._backends)}{suggest(name, self._backends)}")
        return self._backends[name]()

    def __contains__(self, name: str) -> bool:
        return name in self._backends


def subclasses(candidates: Iterable[object], base: type[T], origin: str) -> list[type[T]]:
    """``candidates``, each checked to be a subclass of ``base``; ``origin`` names where
    they came from in the one-line refusal."""
    if not isinstance(candidates, list | tuple | set | frozenset):
        raise InputError(f"{origin} provides {candidates!r}, expected a list of "
                         f"{base.__module__}.{base.__qualname__} subclasses")
    found = []
    for cls in candidates:
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise InputError(f"{origin} provides {cls!r}, expected a "
                             f"{base.__module__}.{base.__qualname__} subclass")
        found.append(cls)
    return found


MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def import_plugin(module_name: str) -> ModuleType:
    """A ``--plugin`` module: it lists backends in ``BACKENDS``, workloads in ``WORKLOADS``."""
    if not MODULE_NAME.fullmatch(module_name):
        raise InputError(f"expected a plugin module name, dotted and importable (my_backends, "
                         f"pkg.plugins), got {module_name!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"cannot import plugin module {module_name!r}: {exc}") from exc
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the plugin's own code failed
        raise InputError(f"plugin module {module_name!r} raised {type(exc).__name__} while being "
                         f"imported: {exc}") from exc
    if not hasattr(module, "BACKENDS") and not hasattr(module, "WORKLOADS"):
        raise InputError(f"plugin module {module_name!r} has neither a BACKENDS nor a WORKLOADS list")
    return module


def plugin_backends(module_name: str) -> list[type[Backend]]:
    return subclasses(getattr(import_plugin(module_name), "BACKENDS", []), Backend,
                      f"plugin {module_name!r}")


def entry_point_backends() -> list[type[Backend]]:
    return [cls for ep in entry_points(group=ENTRY_POINT_GROUP)
            for cls in subclasses([ep.load()], Backend, f"entry point {ep.name!r}")]


def builtin_backends() -> list[type[Backend]]:
    found = []
    for spec in BUILTIN:
        module, _, name = spec.partition(":")
        found.append(getattr(importlib.import_module(module), name))
    return found


def load_registry(plugins: Sequence[str] = ()) -> Registry:
    classes = builtin_backends() + entry_point_backends()
    for module_name in plugins:
        classes += plugin_backends(module_name)
    return Registry({cls.name: cls for cls in classes})
