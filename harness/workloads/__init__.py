"""The workloads a run can measure, by name: the one registry of modes.

A new workload is a module with a ``Workload`` subclass and one entry here, or a plugin
module (``--plugin``) that lists it in ``WORKLOADS``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import is_dataclass

from backends.registry import import_plugin, subclasses
from harness.core.errors import InputError
from harness.core.shapes import unshaped
from harness.core.targets import DEFAULT_MODE
from harness.workloads.base import Workload
from harness.workloads.forward import Forward
from harness.workloads.multi_stream import MultiStream
from harness.workloads.offline import Offline
from harness.workloads.rollout import Rollout
from harness.workloads.server import Server
from harness.workloads.single_stream import SingleStream
from harness.workloads.streaming import Streaming
from harness.workloads.task import TaskFields

WORKLOADS: dict[str, type[Workload]] = {cls.name: cls for cls in (
    Forward, Streaming, Rollout, Server, SingleStream, MultiStream, Offline)}


def load_workloads(plugins: Sequence[str] = ()) -> dict[str, type[Workload]]:
    """The built-in workloads and those of the ``--plugin`` modules, by mode name."""
    classes = list(WORKLOADS.values())
    for module_name in plugins:
        found = subclasses(getattr(import_plugin(module_name), "WORKLOADS", []), Workload,
                           f"plugin {module_name!r}")
        for cls in found:
            _refuse_unshaped(cls, f"plugin {module_name!r}")
        classes += found
    return {cls.name: cls for cls in classes}


def _refuse_unshaped(cls: type[Workload], origin: str) -> None:
    """Its ``row_records`` must be dataclasses whose fields JSON can hold, so that a results
    file's rows of its mode can be checked when read back."""
    for record in cls.row_records:
        if not (isinstance(record, type) and is_dataclass(record)):
            wrong = ["it is not a dataclass"]
        else:
            try:
                wrong = unshaped(record)
            except NameError as exc:  # an annotation naming what its module does not define
                wrong = [f"an annotation that cannot be resolved ({exc})"]
        if wrong:
            raise InputError(
                f"{origin}: expected the row_records of workload {cls.name!r} to be dataclasses "
                f"whose fields hold JSON values (bool, int, float, str, None, list[...], "
                f"tuple[...], dict, a dataclass of these, or a union of them), got {record!r} "
                f"with {'; '.join(wrong)}")


def workload_class(mode: str, workloads: dict[str, type[Workload]] = WORKLOADS) -> type[Workload]:
    if mode not in workloads:
        raise InputError(f"unknown mode {mode!r}; expected one of {', '.join(workloads)}")
    return workloads[mode]


def drawn_as(mode: str, workloads: Mapping[str, type[Workload]] = WORKLOADS) -> type[Workload]:
    """The workload whose columns draw rows of ``mode``: its own, or, for a mode unknown
    here (a plugin's, read without ``--plugin``), the default workload's."""
    return workloads.get(mode, workloads[DEFAULT_MODE])


def row_records(mode: str, workloads: Mapping[str, type[Workload]] = WORKLOADS
                ) -> tuple[type, ...]:
    """The dataclasses whose fields rows of ``mode`` may carry besides the documented keys:
    their workload's, and the task check's, which any workload's rows below fp32 carry."""
    return (*drawn_as(mode, workloads).row_records, TaskFields)
