"""Planning: a scenario and the caller's overrides become the runs to make.

The command line and the pytest-benchmark suite both plan through ``plan``, so both run the
same backends, shapes, dtypes and tolerances, and refuse the same bad input before any work.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from backends.registry import Registry, suggest
from harness.core.agreement import DEFAULT_TOLERANCES, Tolerance
from harness.core.errors import DeviceUnavailableError, InputError
from harness.core.memory import check_device_fits, check_fits
from harness.core.model import ModelConfig
from harness.core.targets import AUTO_DEVICE, DTYPES
from harness.core.timing import TimingConfig
from harness.workloads import WORKLOADS, workload_class
from harness.workloads.base import Shape, Workload, make_workload
from scenarios import Scenario

DEFAULT_MODEL = ModelConfig()


@dataclass(frozen=True)
class RunConfig:
    """One run: a workload through some backends on one device in one dtype."""

    backends: tuple[str, ...]
    workload: Workload
    device: str = "cpu"
    dtype: str = "fp32"
    batch_sizes: tuple[int, ...] = (1, 64, 1024)
    seq_lens: tuple[int, ...] = (50,)
    tolerance: Tolerance = field(default_factory=lambda: DEFAULT_TOLERANCES["fp32"])
    timing: TimingConfig = field(default_factory=TimingConfig)
    workdir: Path = Path("artifacts")
    scenario: str = "default"
    seed: int = 0
    isolate: bool = True  # each backend in its own worker process (harness.engine.isolation)
    backend_timeout_s: float = 600.0  # per call into an isolated backend, preparation included

    @property
    def timed_shapes(self) -> list[Shape]:
        return [(b, s) for s in self.seq_lens for b in self.batch_sizes]

    @property
    def check_shapes(self) -> list[Shape]:
        return self.workload.check_shapes(self.timed_shapes)


@dataclass(frozen=True)
class Overrides:
    """What the caller sets over the scenario's fields; None leaves the scenario's."""

    batch_sizes: tuple[int, ...] | None = None
    seq_lens: tuple[int, ...] | None = None
    backends: tuple[str, ...] | None = None
    dtypes: tuple[str, ...] | None = None
    devices: tuple[str, ...] | None = None  # a device named here must exist
    budget_s: float | None = None
    processes: int | None = None  # worker processes per backend
    atol: float | None = None
    rtol: float | None = None
    params: Mapping[str, Any] = field(default_factory=dict)  # the workload's settings


@dataclass(frozen=True)
class Plan:
    scenario: Scenario  # the scenario with the overrides applied
    workload: Workload
    devices: tuple[str, ...]
    configs: tuple[RunConfig, ...]  # one per device x dtype

    def record(self) -> dict:
        """The scenario block of the results: what actually ran."""
        first = self.configs[0]
        return {**self.scenario.to_dict(), **asdict(self.workload), "backends": list(first.backends),
                "device": self.devices[0], "devices": list(self.devices),
                "timing": asdict(first.timing)}


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_devices(devices: tuple[str, ...], strict: bool) -> tuple[str, ...]:
    """``auto`` becomes cuda or cpu. A CUDA device the caller named must exist (bad input
    otherwise); one listed by a scenario becomes rows that say it is unavailable."""
    resolved: list[str] = []
    for device in devices:
        if device == AUTO_DEVICE:
            device = "cuda" if cuda_available() else "cpu"
        elif device == "cuda" and strict and not cuda_available():
            import torch

            raise DeviceUnavailableError(
                "expected a CUDA device for --device cuda, but torch sees none on this machine "
                f"(torch {torch.__version__}, built for CUDA {torch.version.cuda or 'no CUDA'}); "
                "use --device cpu")
        if device not in resolved:
            resolved.append(device)
    return tuple(resolved)


def _check_dtypes(dtypes: tuple[str, ...]) -> None:
    for dtype in dtypes:
        if dtype not in DTYPES:
            raise InputError(f"unknown dtype {dtype!r}; expected one of "
                             f"{', '.join(DTYPES)}{suggest(dtype, DTYPES)}")


def tolerance_for(scenario: Scenario, dtype: str, overrides: Overrides) -> Tolerance:
    atol, rtol = scenario.tolerance_overrides().get(
        dtype, (DEFAULT_TOLERANCES[dtype].atol, DEFAULT_TOLERANCES[dtype].rtol))
    return Tolerance(overrides.atol if overrides.atol is not None else atol,
                     overrides.rtol if overrides.rtol is not None else rtol)


def backends_on(scenario: Scenario, registry: Registry, device: str) -> tuple[str, ...]:
    if scenario.backends is None:
        return registry.default_for(device)
    return registry.listed_for(scenario.backends, device)


def plan(scenario: Scenario, overrides: Overrides, registry: Registry,
         workloads: Mapping[str, type[Workload]] = WORKLOADS, *, model: ModelConfig = DEFAULT_MODEL,
         workdir: Path = Path("artifacts"), seed: int = 0, isolate: bool = True,
         backend_timeout_s: float = 600.0) -> Plan:
    """The runs for ``scenario`` with ``overrides``; every bad input is refused here,
    before anything is prepared."""
    _check_dtypes(overrides.dtypes or ())
    fields = {name: getattr(overrides, name) for name in
              ("batch_sizes", "seq_lens", "backends", "dtypes", "devices", "budget_s")}
    scenario = replace(scenario, **{k: v for k, v in fields.items() if v is not None},
                       params=tuple({**dict(scenario.params), **overrides.params}.items()))
    workload = make_workload(workload_class(scenario.mode, dict(workloads)), dict(scenario.params))
    for name in scenario.backends or ():
        registry.create(name)  # refuses unknown names before any work
    devices = resolve_devices(scenario.devices, strict=overrides.devices is not None)
    timing = TimingConfig(budget_s=scenario.budget_s, seed=seed)
    if overrides.processes is not None:
        timing = replace(timing, processes=overrides.processes)
    on_device = {device: backends_on(scenario, registry, device) for device in devices}
    shapes = [(b, s) for s in scenario.seq_lens for b in scenario.batch_sizes]
    check_fits(shapes, model.input_size, model.hidden_size,
               max(len(b) for b in on_device.values()), timing.n_inputs)
    on_gpu = [n for n in on_device.get("cuda", ()) if "cuda" in registry.create(n).devices]
    if on_gpu:
        check_device_fits(list(dict.fromkeys([*shapes, *workload.check_shapes(shapes)])),
                          model.input_size, model.hidden_size, len(on_gpu) * timing.processes,
                          timing.n_inputs)
    configs = tuple(
        RunConfig(backends=on_device[device], workload=workload, device=device, dtype=dtype,
                  batch_sizes=scenario.batch_sizes, seq_lens=scenario.seq_lens,
                  tolerance=tolerance_for(scenario, dtype, overrides), timing=timing,
                  workdir=workdir / f"{device}-{dtype}", scenario=scenario.name, seed=seed,
                  isolate=isolate, backend_timeout_s=backend_timeout_s)
        for device in devices for dtype in scenario.dtypes)
    return Plan(scenario, workload, devices, configs)
