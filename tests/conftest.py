from __future__ import annotations

from pathlib import Path

import pytest
import torch

from backends.base import Target
from harness import settings
from harness.checkpoint import Checkpoint, load_or_train
from harness.training import TrainConfig

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                   reason="needs a CUDA GPU; none is visible to torch here")


@pytest.fixture(scope="session", autouse=True)
def process_settings() -> settings.ProcessSettings:
    return settings.apply(settings.default_settings())


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def checkpoint(cache_dir: Path) -> Checkpoint:
    """The default config, trained once per test session (a few seconds on 2 cores)."""
    return load_or_train(TrainConfig(), cache_dir)[0]


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
