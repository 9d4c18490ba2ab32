"""The workloads a run can measure, by name: the one registry of modes.

A new workload is a module with a ``Workload`` subclass and one entry here, or a plugin
module (``--plugin``) that lists it in ``WORKLOADS``.
"""

from __future__ import annotations

from collections.abc import Sequence

from backends.registry import import_plugin, subclasses
from harness.core.errors import InputError
from harness.workloads.base import Workload
from harness.workloads.forward import Forward
from harness.workloads.multi_stream import MultiStream
from harness.workloads.offline import Offline
from harness.workloads.rollout import Rollout
from harness.workloads.server import Server
from harness.workloads.single_stream import SingleStream
from harness.workloads.streaming import Streaming

WORKLOADS: dict[str, type[Workload]] = {cls.name: cls for cls in (
    Forward, Streaming, Rollout, Server, SingleStream, MultiStream, Offline)}


def load_workloads(plugins: Sequence[str] = ()) -> dict[str, type[Workload]]:
    """The built-in workloads and those of the ``--plugin`` modules, by mode name."""
    classes = list(WORKLOADS.values())
    for module_name in plugins:
        classes += subclasses(getattr(import_plugin(module_name), "WORKLOADS", []), Workload,
                              f"plugin {module_name!r}")
    return {cls.name: cls for cls in classes}


def workload_class(mode: str, workloads: dict[str, type[Workload]] = WORKLOADS) -> type[Workload]:
    if mode not in workloads:
        raise InputError(f"unknown mode {mode!r}; expected one of {', '.join(workloads)}")
    return workloads[mode]
