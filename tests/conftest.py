from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
import torch

from backends.base import Backend, Target
from harness.core import settings
from harness.core.checkpoint import Checkpoint, load_or_train
from harness.core.training import TrainConfig

# A quick run for tests about something other than the timing: one shape, a short budget,
# one worker process per backend, and no exit 3 should the machine be busy or its host unsteady.
FAST = ["--batch-sizes", "1", "--budget", "0.05", "--processes", "1", "--allow-contended",
        "--allow-unsteady"]
NO_GPU = "needs a CUDA GPU; none is visible to torch here"
# Set on a GPU machine, so that a test skipped for want of a GPU or of onnxruntime-gpu fails
# instead: there they must run (README, "CUDA").
REQUIRE_GPU = os.environ.get("LSTM_HARNESS_REQUIRE_GPU") == "1"
requires_cuda = pytest.mark.cuda


def gpu_skip(reason: str) -> NoReturn:
    """Skip for want of a GPU or of onnxruntime-gpu, or fail where they are required."""
    if REQUIRE_GPU:
        pytest.fail(f"{reason}, and LSTM_HARNESS_REQUIRE_GPU=1 requires it", pytrace=False)
    pytest.skip(reason)


def skip_unless_usable(backend: Backend, target: Target) -> None:
    """Skip, saying why, where ``backend`` cannot serve ``target``: for want of a GPU or of
    onnxruntime-gpu through ``gpu_skip``; for want of TensorRT (absent from the GPU machines
    this project has been lent) always."""
    reason = backend.unavailable_reason(target)
    if reason is None:
        return
    message = f"{backend.name} cannot serve {target.device} here: {reason}"
    if target.device == "cuda" and "TensorRT" not in reason:
        gpu_skip(message)
    pytest.skip(message)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("cuda") and not torch.cuda.is_available():
        gpu_skip(NO_GPU)
# Any of these asks pytest-benchmark for timings; without one, each benchmark runs once,
# untimed, as a correctness test (pytest-benchmark's --benchmark-disable).
TIMING_OPTIONS = ("benchmark_enable", "benchmark_only", "benchmark_json", "benchmark_save",
                  "benchmark_autosave", "benchmark_compare")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Runs before pytest-benchmark reads its options (its hook is trylast)."""
    if hasattr(config.option, "benchmark_disable") and \
            not any(getattr(config.option, name, None) for name in TIMING_OPTIONS):
        config.option.benchmark_disable = True


@pytest.fixture(scope="session", autouse=True)
def process_settings() -> settings.ProcessSettings:
    return settings.apply(settings.default_settings())


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session", autouse=True)
def session_cache(cache_dir: Path) -> Iterator[Path]:
    """Tests cache checkpoints, ONNX exports and AOTInductor packages in the session's
    folder, not the user's default one; a cache the user names with $LSTM_HARNESS_CACHE is
    honoured (the benchmarks then use the CLI's checkpoint), and a test that needs another
    sets its own."""
    with pytest.MonkeyPatch.context() as patch:
        if not os.environ.get("LSTM_HARNESS_CACHE"):
            patch.setenv("LSTM_HARNESS_CACHE", str(cache_dir))
        yield Path(os.environ["LSTM_HARNESS_CACHE"])


@pytest.fixture(scope="session")
def checkpoint(cache_dir: Path) -> Checkpoint:
    """The default config, trained once per test session (a few seconds on 2 cores)."""
    return load_or_train(TrainConfig(), cache_dir)[0]


@pytest.fixture()
def cached(checkpoint: Checkpoint, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the CLI (and any harness subprocess) at the session's trained checkpoint."""
    monkeypatch.setenv("LSTM_HARNESS_CACHE", str(cache_dir))
    return cache_dir


@pytest.fixture()
def cpu_target(tmp_path: Path, process_settings: settings.ProcessSettings) -> Target:
    return Target(device="cpu", dtype="fp32", workdir=tmp_path,
                  threads=process_settings.intra_op_threads)


@pytest.fixture(autouse=True)
def history_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test records runs into its own database, never the user's real history."""
    db = tmp_path / "history.sqlite"
    monkeypatch.setenv("LSTM_HARNESS_DB", str(db))
    return db
