"""One registry of backends: the built-ins, the ``harness.backends`` entry points, and
``--plugin MODULE`` modules that define ``BACKENDS = [MyBackend, ...]``."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable, Mapping, Sequence
from importlib.metadata import entry_points

from backends.base import Backend
from backends.compiled import CompileBackend, CudaGraphsCompileBackend
from backends.eager import EagerBackend
from backends.onnxruntime_backend import OnnxRuntimeBackend, OnnxRuntimeTensorRTBackend
from backends.reference import ReferenceBackend
from backends.torchscript import TorchScriptBackend
from harness.errors import InputError

BUILTIN: tuple[type[Backend], ...] = (
    ReferenceBackend, EagerBackend, TorchScriptBackend, CompileBackend, OnnxRuntimeBackend,
    CudaGraphsCompileBackend, OnnxRuntimeTensorRTBackend,
)
ENTRY_POINT_GROUP = "harness.backends"


def suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    return f" (did you mean {', '.join(close)}?)" if close else ""


class Registry:
    """An immutable name -> backend class mapping."""

    def __init__(self, backends: Mapping[str, type[Backend]]) -> None:
        self._backends = dict(backends)

    def names(self) -> list[str]:
        return list(self._backends)

    def create(self, name: str) -> Backend:
        if name not in self._backends:
            raise InputError(f"unknown backend {name!r}; expected one of "
                             f"{', '.join(self._backends)}{suggest(name, self._backends)}")
        return self._backends[name]()

    def __contains__(self, name: str) -> bool:
        return name in self._backends


def _validated(candidates: Iterable[object], origin: str) -> list[type[Backend]]:
    found = []
    for cls in candidates:
        if not (isinstance(cls, type) and issubclass(cls, Backend)):
            raise InputError(f"{origin} provides {cls!r}, expected a backends.base.Backend subclass")
        found.append(cls)
    return found


def plugin_backends(module_name: str) -> list[type[Backend]]:
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"cannot import plugin module {module_name!r}: {exc}") from exc
    if not hasattr(module, "BACKENDS"):
        raise InputError(f"plugin module {module_name!r} has no BACKENDS list")
    return _validated(module.BACKENDS, f"plugin {module_name!r}")


def entry_point_backends() -> list[type[Backend]]:
    return [cls for ep in entry_points(group=ENTRY_POINT_GROUP)
            for cls in _validated([ep.load()], f"entry point {ep.name!r}")]


def load_registry(plugins: Sequence[str] = ()) -> Registry:
    classes = list(BUILTIN) + entry_point_backends()
    for module_name in plugins:
        classes += plugin_backends(module_name)
    return Registry({cls.name: cls for cls in classes})
