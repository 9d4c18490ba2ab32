import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.core.checkpoint import load, load_or_train, paths_for, sha256_file
from harness.core.errors import CheckpointError
from harness.core.model import ModelConfig
from harness.core.training import TrainConfig


def test_default_training_reaches_the_target_mse(checkpoint):
    assert checkpoint.metadata["val_mse"] < 1e-3
    assert checkpoint.metadata["train_seconds"] < 60


def test_metadata_records_what_a_reader_needs(checkpoint):
    meta = checkpoint.metadata
    assert meta["model"] == ModelConfig().to_dict()
    assert meta["data"]["length"] == 1000 and meta["seed"] == 0
    assert meta["weights_sha256"] == sha256_file(checkpoint.weights_path)
    assert {"torch", "numpy", "python"} <= set(meta["versions"])  # what training depends on


def test_round_trip_gives_identical_predictions(checkpoint, cache_dir):
    again, trained = load_or_train(TrainConfig(), cache_dir)
    assert not trained  # the cached checkpoint was reused
    x = torch.randn(8, 50, 1)
    with torch.inference_mode():
        assert torch.equal(again.model(x), checkpoint.model(x))


def test_training_is_deterministic_on_cpu(tmp_path, checkpoint):
    fresh, trained = load_or_train(TrainConfig(), tmp_path)
    assert trained and fresh.sha256 == checkpoint.sha256


def test_train_keeps_the_cached_checkpoint_until_the_new_one_is_written(tmp_path, monkeypatch,
                                                                         capsys):
    from harness.cli.main import main
    from harness.core import checkpoint as checkpoints

    config = TrainConfig(model=ModelConfig(hidden_size=4), epochs=1)
    argv = ["train", "--cache-dir", str(tmp_path), "--hidden-size", "4", "--epochs", "1"]
    assert main(argv) == 0
    first = sha256_file(paths_for(tmp_path, config)[0])
    seen = []  # what an interrupt during training would leave behind
    real_train = checkpoints.train

    def train(*args, **kwargs):
        seen.append(all(path.exists() for path in paths_for(tmp_path, config)))
        return real_train(*args, **kwargs)

    monkeypatch.setattr(checkpoints, "train", train)
    assert main(argv) == 0  # `train` trains afresh, and the same config gives the same weights
    assert seen == [True] and sha256_file(paths_for(tmp_path, config)[0]) == first


def _copy(checkpoint, tmp_path: Path) -> tuple[Path, Path]:
    weights, meta = paths_for(tmp_path, checkpoint.config)
    weights.parent.mkdir(parents=True)
    weights.write_bytes(checkpoint.weights_path.read_bytes())
    meta.write_text(json.dumps(checkpoint.metadata))
    return weights, meta


def test_tampered_weights_are_refused(checkpoint, tmp_path):
    weights, meta = _copy(checkpoint, tmp_path)
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load(weights, meta)


def test_truncated_weights_are_refused(checkpoint, tmp_path):
    weights, meta = _copy(checkpoint, tmp_path)
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="SHA-256"):
        load(weights, meta)


def test_checkpoint_for_another_config_is_refused(checkpoint, tmp_path):
    weights, meta = _copy(checkpoint, tmp_path)
    with pytest.raises(CheckpointError, match="hidden_size"):
        load(weights, meta, expected=TrainConfig(model=ModelConfig(hidden_size=32)))


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_malicious_pickle_is_refused_and_never_runs(checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    weights, meta = _copy(checkpoint, tmp_path)
    weights.write_bytes(pickle.dumps({"lstm.weight_ih_l0": _Payload()}))
    # Even with a metadata hash that matches the pickle, nothing unpickles it.
    meta.write_text(json.dumps({**checkpoint.metadata, "weights_sha256": sha256_file(weights)}))
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load(weights, meta)
    assert not (tmp_path / "PWNED").exists()


def test_malformed_metadata_is_refused(checkpoint, tmp_path):
    weights, meta = _copy(checkpoint, tmp_path)
    meta.write_text("{not json")
    with pytest.raises(CheckpointError, match="malformed"):
        load(weights, meta)
    assert np.isfinite(checkpoint.metadata["val_mse"])
