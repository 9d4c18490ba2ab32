"""The pytest-benchmark suite's wiring: cases from the harness's own registry and scenario,
backends prepared once per session through the harness's own handles.

Only the clock loop and the statistics are pytest-benchmark's; what is measured, on which
inputs, after which preparation, is exactly what ``python -m harness run`` measures.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from dataclasses import astuple, dataclass, fields
from pathlib import Path

import numpy as np
import pytest
import torch

from backends.base import Target
from backends.reference import ReferenceModel
from backends.registry import Registry, load_registry
from harness import environment, settings
from harness.checkpoint import Checkpoint, load_or_train
from harness.data import random_batch, sine_batch
from harness.handles import LocalHandle
from harness.runner import REFERENCE
from harness.training import TrainConfig
from scenarios import DEFAULT

DEVICES = ("cpu", "cuda")
SETTINGS_KEY = pytest.StashKey[settings.ProcessSettings]()
NO_GPU = "needs a CUDA GPU; none is visible to torch here"


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

    @property
    def row_dtype(self) -> str:
        """The dtype a result row shows: the reference computes in float64 whatever is asked."""
        return "fp64" if self.backend == REFERENCE else self.dtype


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


def _registry(config: pytest.Config) -> Registry:
    # getoption's default covers a run from the repository root, where this conftest is
    # loaded after option parsing and its options therefore do not exist.
    return load_registry(tuple(config.getoption("harness_plugin", default=[]) or ()))


def cases(registry: Registry) -> list[Case]:
    """The scenario's backends (then any plugin or entry-point ones) x devices x shapes."""
    names = [*DEFAULT.backends, *(n for n in registry.names() if n not in DEFAULT.backends)]
    return [Case(name, device, dtype, batch, seq_len)
            for device in DEVICES for dtype in DEFAULT.dtypes for seq_len in DEFAULT.seq_lens
            for batch in DEFAULT.batch_sizes for name in names]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" not in metafunc.fixturenames:
        return
    # One plain parameter per field, so pytest-benchmark's saved "params" stay readable and
    # --benchmark-group-by param:batch_size works.
    no_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_GPU)
    metafunc.parametrize([f.name for f in fields(Case)], [
        pytest.param(*astuple(case), id=case.id, marks=[no_gpu] if case.device == "cuda" else [])
        for case in cases(_registry(metafunc.config))
    ])


@pytest.fixture()
def case(backend: str, device: str, dtype: str, batch_size: int, seq_len: int) -> Case:
    return Case(backend, device, dtype, batch_size, seq_len)


@pytest.fixture(scope="session", autouse=True)
def process_settings(request: pytest.FixtureRequest) -> settings.ProcessSettings:
    """Overrides tests/conftest.py's: the same defaults unless ``--harness-threads`` is given."""
    threads = request.config.getoption("harness_threads", default=None)
    applied = settings.apply(settings.default_settings(threads))
    request.config.stash[SETTINGS_KEY] = applied
    return applied


@pytest.fixture(scope="session")
def checkpoint(cache_dir: Path) -> Checkpoint:
    """The CLI's cached checkpoint when $LSTM_HARNESS_CACHE names a cache, else the tests' one.

    Overrides tests/conftest.py's without redirecting its ``cache_dir``, on which other tests
    rely; without the variable both train into (and then share) that same cache.
    """
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
        reason = backend.unavailable_reason(target)
        if reason:
            pytest.skip(f"{case.backend} unavailable: {reason}")
        key = (case.backend, case.device, case.dtype)
        if key not in self._open:
            # The same first batch as the runner's, so prepare and first-call figures match.
            first = sine_batch(DEFAULT.batch_sizes[0], DEFAULT.seq_lens[0], 0)
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


class AgreementInputs:
    """Real sine windows and random inputs per shape, with the float64 reference's answers.

    Computed once per shape: the reference is slow at batch 1024, and every backend at that
    shape is checked against the same answers.
    """

    def __init__(self, checkpoint: Checkpoint) -> None:
        self._reference = ReferenceModel(checkpoint.model)
        self._input_size = checkpoint.model.config.input_size
        self._cache: dict[tuple[int, int], dict[str, tuple[np.ndarray, np.ndarray]]] = {}

    def get(self, batch: int, seq_len: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{kind: (inputs, expected outputs)} for kind in sine, random."""
        if (batch, seq_len) not in self._cache:
            inputs = {"sine": sine_batch(batch, seq_len, seed=1),
                      "random": random_batch(batch, seq_len, self._input_size, seed=2)}
            self._cache[batch, seq_len] = {kind: (x, self._reference.forward(x))
                                           for kind, x in inputs.items()}
        return self._cache[batch, seq_len]


@pytest.fixture(scope="session")
def agreement_inputs(checkpoint: Checkpoint) -> AgreementInputs:
    return AgreementInputs(checkpoint)


@pytest.fixture(scope="session")
def environments(process_settings: settings.ProcessSettings) -> dict[str, dict]:
    """The harness's environment record per device, collected once."""
    return {device: environment.collect(device, process_settings)
            for device in DEVICES if device == "cpu" or torch.cuda.is_available()}


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """Saved files carry the harness's environment, so reports can show versions and threads."""
    applied = config.stash.get(SETTINGS_KEY, None)
    if applied is None:
        return
    env = environment.collect("cpu", applied)
    # pytest-benchmark warns when a compared run's machine_info differs: per-run fields
    # (timestamp, command line) would make it warn every time.
    for key in ("timestamp", "command"):
        env.pop(key, None)
    machine_info["lstm_harness"] = env

