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
from harness.core.agreement import DEFAULT_TOLERANCES, TaskBudget, Tolerance, task_budget_for
from harness.core.checkpoint import ModelSource, source_record
from harness.core.errors import DeviceUnavailableError, InputError
from harness.core.memory import check_device_fits, check_fits
from harness.core.model import ModelConfig
from harness.core.targets import AUTO_DEVICE, DTYPES
from harness.core.timing import TimingConfig
from harness.core.training import TrainConfig
from harness.core.weights_file import require_file
from harness.workloads import WORKLOADS, workload_class
from harness.workloads.base import Shape, Workload, make_workload
from scenarios import Scenario

DEFAULT_MODEL: ModelSource = TrainConfig()  # what a run covers unless told otherwise


@dataclass(frozen=True)
class RunConfig:
    """One run: a workload through some backends, for one model on one device in one dtype."""

    backends: tuple[str, ...]
    workload: Workload
    device: str = "cpu"
    dtype: str = "fp32"
    batch_sizes: tuple[int, ...] = (1, 64, 1024)
    seq_lens: tuple[int, ...] = (50,)
    tolerance: Tolerance = field(default_factory=lambda: DEFAULT_TOLERANCES["fp32"])
    task_budget: TaskBudget | None = None  # set for dtypes judged on the task
    timing: TimingConfig = field(default_factory=TimingConfig)
    workdir: Path = Path("artifacts")
    scenario: str = "default"
    seed: int = 0
    isolate: bool = True  # each backend in its own worker process (harness.engine.isolation)
    backend_timeout_s: float = 600.0  # per call into an isolated backend, preparation included
    model: ModelSource = DEFAULT_MODEL  # which model: the caller loads or trains it
    # Where a workload may keep files of its own beside the results (LoadGen's logs, say);
    # None: it keeps none.
    files_dir: Path | None = None

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
    max_canary_spread: float | None = None  # above it a run is unsteady
    atol: float | None = None
    rtol: float | None = None
    task_budget: float | None = None  # the task budget's MSE ratio, for dtypes judged on the task
    params: Mapping[str, Any] = field(default_factory=dict)  # the workload's settings
    models: tuple[ModelSource, ...] | None = None  # --checkpoint, or the model flags


@dataclass(frozen=True)
class Plan:
    scenario: Scenario  # the scenario with the overrides applied
    workload: Workload
    devices: tuple[str, ...]
    models: tuple[ModelSource, ...]
    configs: tuple[RunConfig, ...]  # one per model x device x dtype
    gpu_workers: int = 0  # worker processes on the GPU at once, for its memory check

    def record(self) -> dict:
        """The scenario block of the results: what actually ran."""
        first = self.configs[0]
        return {**self.scenario.to_dict(), **asdict(self.workload), "backends": list(first.backends),
                "device": self.devices[0], "devices": list(self.devices),
                "models": [source_record(m) for m in self.models], "isolate": first.isolate,
                "timing": asdict(first.timing)}

    def refuse_oversized(self, model: ModelConfig) -> None:
        """InputError when ``model``'s weights, or a timed shape's inputs and activations beside
        them, cannot fit in memory, or a CUDA run's workers in the GPU's free memory (for a
        model read from a file, once its sizes are known)."""
        first = self.configs[0]
        shapes = first.timed_shapes
        check_fits(shapes, model, max(len(c.backends) for c in self.configs), first.timing.n_inputs)
        if self.gpu_workers:
            check_device_fits(list(dict.fromkeys([*shapes, *first.check_shapes])), model,
                              self.gpu_workers, first.timing.n_inputs)

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


def backends_on(scenario: Scenario, registry: Registry, device: str, dtype: str) -> tuple[str, ...]:
    """The backends a run covers: those listed, or the default set."""
    if scenario.backends is None:
        return registry.default_for(device, dtype)
    return registry.listed_for(scenario.backends, device)


def has_task(source: ModelSource) -> bool:
    """Whether the task check can judge ``source``: a model the harness trains forecasts its
    own sine, feeding each prediction back; what a user's file was trained for is unknown."""
    return isinstance(source, TrainConfig) and source.model.output_size == source.model.input_size


def _check_sources(models: tuple[ModelSource, ...], workload: Workload) -> None:
    """A checkpoint path must name a file (what is in it, the caller reads); a config must
    suit the workload (a rollout needs output_size == input_size)."""
    for source in models:
        if isinstance(source, Path):
            require_file(source)
        else:
            workload.refuse_model(source.model)


def plan(scenario: Scenario, overrides: Overrides, registry: Registry,
         workloads: Mapping[str, type[Workload]] = WORKLOADS, *, workdir: Path = Path("artifacts"),
         seed: int = 0, isolate: bool = True, backend_timeout_s: float = 600.0,
         files_dir: Path | None = None) -> Plan:
    """The runs for ``scenario`` with ``overrides``, one per model x device x dtype; every
    bad input is refused here, before anything is prepared or any model trained."""
    _check_dtypes(overrides.dtypes or ())
    fields = {name: getattr(overrides, name) for name in
              ("batch_sizes", "seq_lens", "backends", "dtypes", "devices", "budget_s",
               "processes", "models")}
    scenario = replace(scenario, **{k: v for k, v in fields.items() if v is not None},
                       params=tuple({**dict(scenario.params), **overrides.params}.items()))
    workload = make_workload(workload_class(scenario.mode, dict(workloads)), dict(scenario.params))
    for name in scenario.backends or ():
        registry.create(name)  # refuses unknown names before any work
    models = scenario.models or (DEFAULT_MODEL,)
    _check_sources(models, workload)
    devices = resolve_devices(scenario.devices, strict=overrides.devices is not None)
    timing = TimingConfig(budget_s=scenario.budget_s, seed=seed)
    if not isolate:
        if (overrides.processes or 1) > 1:
            raise InputError(f"expected --processes 1 with --no-isolate (every backend then runs "
                             f"in this one process), got --processes {overrides.processes}")
        timing = replace(timing, processes=1)  # further "processes" would be this one again
    elif scenario.processes is not None:
        timing = replace(timing, processes=scenario.processes)
    if overrides.max_canary_spread is not None:
        timing = replace(timing, max_canary_spread=overrides.max_canary_spread)
    on = {(device, dtype): backends_on(scenario, registry, device, dtype)
          for device in devices for dtype in scenario.dtypes}
    several = len(models) > 1
    configs = tuple(
        RunConfig(backends=on[device, dtype], workload=workload, device=device, dtype=dtype,
                  batch_sizes=scenario.batch_sizes, seq_lens=scenario.seq_lens,
                  tolerance=tolerance_for(scenario, dtype, overrides),
                  task_budget=task_budget_for(dtype, overrides.task_budget) if has_task(model) else None,
                  timing=timing,
                  workdir=workdir / (f"model-{i}" if several else "") / f"{device}-{dtype}",
                  scenario=scenario.name, seed=seed, isolate=isolate,
                  backend_timeout_s=backend_timeout_s, model=model,
                  files_dir=files_dir)
        for i, model in enumerate(models) for device in devices for dtype in scenario.dtypes)
    on_gpu = {name for (device, _), names in on.items() if device == "cuda" for name in names
              if "cuda" in registry.create(name).devices}
    the_plan = Plan(scenario, workload, devices, models, configs,
                    gpu_workers=len(on_gpu) * timing.processes)
    for source in models:
        if isinstance(source, TrainConfig):
            the_plan.refuse_oversized(source.model)
    return the_plan
