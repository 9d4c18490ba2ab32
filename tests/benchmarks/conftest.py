"""The pytest-benchmark suite's wiring: cases planned by the harness's own planner from its
registry and default scenario, backends prepared once per session through its own handles,
agreement judged by its own check.

pytest-benchmark owns the clock loop and the statistics: its clock brackets each call of the
harness's Timer making one call (``time_calls(1)``), one backend after another. That call
synchronises the session before and after; for sessions on torch's current CUDA stream it
also records two CUDA events around the call and reads their elapsed time, which
pytest-benchmark never sees. So on CUDA every timed call carries a full synchronise (and the
event work), costs that ``python -m harness run`` spreads over rounds of many calls,
interleaved across backends, timed there by those events (torch's stream) or by the host
clock after one synchronise per round. The suite's figures are per-call latencies, to compare
between its own benchmarks, not with ``run``'s.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from dataclasses import astuple, dataclass, fields, replace
from pathlib import Path

import pytest
import torch

from backends.base import Target
from backends.reference import ReferenceModel
from backends.registry import Registry, load_registry
from harness.core import settings
from harness.core.checkpoint import Checkpoint, load_or_train, open_checkpoint
from harness.core.data import sine_batch
from harness.core.errors import CheckpointError
from harness.core.targets import DEVICES
from harness.core.training import TrainConfig
from harness.engine.context import environment_for
from harness.engine.handles import LocalHandle
from harness.engine.plan import Overrides, Plan, RunConfig, plan
from harness.workloads.base import CheckContext
from harness.workloads.forward import FORWARD
from scenarios import DEFAULT
from tests.conftest import skip_unless_usable

SETTINGS_KEY = pytest.StashKey[settings.ProcessSettings]()
CHECKPOINT_KEY = pytest.StashKey[Checkpoint]()


@dataclass(frozen=True)
class Case:
    """One benchmark: a backend on a device and dtype, at one shape."""

    backend: str
    device: str
    dtype: str
    batch_size: int
    seq_len: int

    @property
    def id(self) -> str:
        return f"{self.backend}-{self.device}-{self.dtype}-batch{self.batch_size}-seq{self.seq_len}"

    @property
    def group(self) -> str:
        """pytest-benchmark's table groups by this: all backends side by side per shape."""
        return f"{self.device} {self.dtype} batch={self.batch_size} seq_len={self.seq_len}"



def _threads(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lstm-harness benchmarks")
    group.addoption("--harness-threads", type=_threads, default=None, metavar="N",
                    help="intra-op threads for torch and ONNX Runtime (default: physical cores)")
    group.addoption("--harness-plugin", action="append", default=[], metavar="MODULE",
                    help="also benchmark the backends in MODULE's BACKENDS list (like run --plugin)")
    group.addoption("--harness-checkpoint", type=Path, default=None, metavar="PATH",
                    help="benchmark the model in PATH (like run --checkpoint): a state_dict saved "
                    "with torch.save(model.state_dict(), PATH), a safetensors file, or one of the "
                    "harness's own checkpoints")


def pytest_configure(config: pytest.Config) -> None:
    """A --harness-checkpoint file is read once, before any test: one that is unreadable or
    holds no LSTMPredictor is a usage error, reported in its one line."""
    path = config.getoption("harness_checkpoint", default=None)
    if path is not None:
        try:
            config.stash[CHECKPOINT_KEY] = open_checkpoint(path)
        except CheckpointError as exc:
            raise pytest.UsageError(f"--harness-checkpoint: {exc}") from None


def _registry(config: pytest.Config) -> Registry:
    # getoption's default covers a run from the repository root, where this conftest is
    # loaded after option parsing and its options therefore do not exist.
    return load_registry(tuple(config.getoption("harness_plugin", default=[]) or ()))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" not in metafunc.fixturenames:
        return
    # One plain parameter per field, so pytest-benchmark's saved "params" stay readable and
    # --benchmark-group-by param:batch_size works.
    metafunc.parametrize([f.name for f in fields(Case)], [
        pytest.param(*astuple(case), id=case.id,
                     marks=[pytest.mark.cuda] if case.device == "cuda" else [])
        for case in cases(_registry(metafunc.config))
    ])


@pytest.fixture()
def case(backend: str, device: str, dtype: str, batch_size: int, seq_len: int) -> Case:
    return Case(backend, device, dtype, batch_size, seq_len)


def benchmark_plan(registry: Registry) -> Plan:
    """The default scenario on every device, through the engine's planner: its backends,
    then every other registered one (CUDA-only variants, plugins), in its dtypes and shapes."""
    names = (*registry.default_for("cpu"),
             *(n for n in registry.names() if n not in registry.default_for("cpu")))
    scenario = replace(DEFAULT, backends=names, devices=DEVICES)
    return plan(scenario, Overrides(), registry)


def cases(registry: Registry) -> list[Case]:
    """One per backend x device x dtype x shape of the plan."""
    return [Case(name, config.device, config.dtype, batch, seq_len)
            for config in benchmark_plan(registry).configs
            for batch, seq_len in config.timed_shapes for name in config.backends]


@pytest.fixture(scope="session", autouse=True)
def process_settings(request: pytest.FixtureRequest) -> settings.ProcessSettings:
    """Overrides tests/conftest.py's: the same defaults unless ``--harness-threads`` is given."""
    threads = request.config.getoption("harness_threads", default=None)
    applied = settings.apply(settings.default_settings(threads))
    request.config.stash[SETTINGS_KEY] = applied
    return applied


@pytest.fixture(scope="session")
def checkpoint(cache_dir: Path, request: pytest.FixtureRequest) -> Checkpoint:
    """The model of --harness-checkpoint; else the CLI's cached checkpoint when
    $LSTM_HARNESS_CACHE names a cache, else the tests' one.

    Overrides tests/conftest.py's without redirecting its ``cache_dir``, on which other tests
    rely; without the variable both train into (and then share) that same cache.
    """
    given = request.config.stash.get(CHECKPOINT_KEY, None)
    if given is not None:
        return given
    explicit = os.environ.get("LSTM_HARNESS_CACHE")
    return load_or_train(TrainConfig(), Path(explicit) if explicit else cache_dir)[0]


@pytest.fixture(scope="session")
def registry(request: pytest.FixtureRequest) -> Registry:
    return _registry(request.config)


class Handles:
    """Each backend x device x dtype prepared once, the first time a benchmark needs it."""

    def __init__(self, checkpoint: Checkpoint, registry: Registry,
                 process: settings.ProcessSettings, workdir: Path) -> None:
        self._checkpoint = checkpoint
        self._registry = registry
        self._process = process
        self._workdir = workdir
        self._open: dict[tuple[str, str, str], LocalHandle | Exception] = {}

    def get(self, case: Case) -> LocalHandle:
        """The prepared handle; skips with the backend's own reason where it cannot run."""
        target = Target(device=case.device, dtype=case.dtype, workdir=self._workdir,
                        threads=self._process.intra_op_threads,
                        ort_allow_spinning=self._process.ort_allow_spinning)
        backend = self._registry.create(case.backend)
        skip_unless_usable(backend, target)
        key = (case.backend, case.device, case.dtype)
        if key not in self._open:
            # The same first batch as the runner's, so prepare and first-call figures match.
            first = sine_batch(DEFAULT.batch_sizes[0], DEFAULT.seq_lens[0], 0,
                               self._checkpoint.model.config.input_size)
            try:
                self._open[key] = LocalHandle.open(backend, self._checkpoint.model, target, first)
            except Exception as exc:
                self._open[key] = exc  # remembered, so its other benchmarks fail without retrying
                raise
        opened = self._open[key]
        if isinstance(opened, Exception):
            pytest.fail(f"{case.backend} on {case.device} failed to prepare earlier in this "
                        f"session: {type(opened).__name__}: {opened}", pytrace=False)
        return opened

    def close(self) -> None:
        for opened in self._open.values():
            if isinstance(opened, LocalHandle):
                opened.close()


@pytest.fixture(scope="session")
def handles(checkpoint: Checkpoint, registry: Registry, process_settings: settings.ProcessSettings,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Handles]:
    opened = Handles(checkpoint, registry, process_settings, tmp_path_factory.mktemp("artifacts"))
    yield opened
    opened.close()


class Checks:
    """The engine's one-window agreement check at one benchmark's shape, on sine and random
    inputs. One context per device and dtype: the float64 reference computes each answer
    once, however many backends are checked against it."""

    def __init__(self, checkpoint: Checkpoint, registry: Registry) -> None:
        self._reference = ReferenceModel(checkpoint.model)
        self._input_size = checkpoint.model.config.input_size
        self._configs = {(c.device, c.dtype): c for c in benchmark_plan(registry).configs}
        self._contexts: dict[tuple[str, str, tuple[int, int]], CheckContext] = {}

    def config(self, case: Case) -> RunConfig:
        return self._configs[case.device, case.dtype]

    def run(self, case: Case, handle: LocalHandle, dtype: str) -> list:
        config = self.config(case)
        shape = (case.batch_size, case.seq_len)
        key = (case.device, case.dtype, shape)
        if key not in self._contexts:
            self._contexts[key] = CheckContext(self._reference, config.tolerance, self._input_size,
                                               config.seed, [shape], [shape])
        return FORWARD.check(self._contexts[key], handle, case.backend, dtype).checks


@pytest.fixture(scope="session")
def checks(checkpoint: Checkpoint, registry: Registry) -> Checks:
    return Checks(checkpoint, registry)


@pytest.fixture(scope="session")
def environments(process_settings: settings.ProcessSettings) -> dict[str, dict]:
    """The harness's environment record per device, collected once."""
    registry = load_registry()
    return {device: environment_for(device, process_settings, registry)
            for device in DEVICES if device == "cpu" or torch.cuda.is_available()}


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """Saved files carry the harness's environment, so reports can show versions and threads."""
    applied = config.stash.get(SETTINGS_KEY, None)
    if applied is None:
        return
    env = environment_for("cpu", applied, _registry(config))
    # pytest-benchmark warns when a compared run's machine_info differs: per-run fields
    # (timestamp, command line) would make it warn every time.
    for key in ("timestamp", "command"):
        env.pop(key, None)
    machine_info["lstm_harness"] = env

