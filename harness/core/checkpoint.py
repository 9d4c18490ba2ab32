"""Checkpoints that load without unpickling: safetensors weights plus JSON metadata.

The metadata records the weights' SHA-256; loading verifies it, so a tampered or truncated
file is refused before any tensor is used.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from harness.core.data import SineConfig
from harness.core.environment import library_versions
from harness.core.errors import CheckpointError
from harness.core.model import LSTMPredictor, ModelConfig
from harness.core.training import TrainConfig, TrainResult, train

FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    explicit = os.environ.get("LSTM_HARNESS_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lstm-harness"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def config_key(config: TrainConfig) -> str:
    """A stable name for a training config: equal configs share one cached checkpoint."""
    canonical = json.dumps(config.to_dict(), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Checkpoint:
    model: LSTMPredictor
    config: TrainConfig
    metadata: dict
    weights_path: Path

    @property
    def sha256(self) -> str:
        return self.metadata["weights_sha256"]


def paths_for(cache_dir: Path, config: TrainConfig) -> tuple[Path, Path]:
    stem = cache_dir / "checkpoints" / f"lstm-{config_key(config)}"
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def save(result: TrainResult, config: TrainConfig, weights_path: Path, meta_path: Path) -> Checkpoint:
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in result.model.state_dict().items()}
    tmp = weights_path.with_suffix(".tmp")
    save_file(state, str(tmp))
    os.replace(tmp, weights_path)
    metadata = {
        "format_version": FORMAT_VERSION,
        "model": config.model.to_dict(),
        "data": config.data.to_dict(),
        "train": {k: v for k, v in config.to_dict().items() if k not in ("model", "data")},
        "seed": config.seed,
        "val_mse": result.val_mse,
        "train_seconds": result.train_seconds,
        "weights_file": weights_path.name,
        "weights_sha256": sha256_file(weights_path),
        "versions": library_versions(),
    }
    tmp_meta = meta_path.with_suffix(".tmp")
    tmp_meta.write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp_meta, meta_path)
    return Checkpoint(result.model, config, metadata, weights_path)


def _config_from_metadata(metadata: dict) -> TrainConfig:
    return TrainConfig(model=ModelConfig(**metadata["model"]), data=SineConfig(**metadata["data"]),
                       **metadata["train"])


def load(weights_path: Path, meta_path: Path, expected: TrainConfig | None = None) -> Checkpoint:
    """Load and verify a checkpoint; refuse a tampered file or one for another config."""
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
        stored = _config_from_metadata(metadata)
        recorded_hash = metadata["weights_sha256"]
    except FileNotFoundError as exc:
        raise CheckpointError(f"checkpoint metadata not found: {meta_path}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint metadata {meta_path} is malformed: {exc}") from exc
    if expected is not None and stored != expected:
        raise CheckpointError(
            f"checkpoint {weights_path} was trained for model {stored.model.to_dict()}, "
            f"expected {expected.model.to_dict()} (or another data/train config)")
    if not weights_path.is_file():
        raise CheckpointError(f"checkpoint weights not found: {weights_path}")
    actual_hash = sha256_file(weights_path)
    if actual_hash != recorded_hash:
        raise CheckpointError(
            f"checkpoint {weights_path} has SHA-256 {actual_hash[:16]}…, expected "
            f"{recorded_hash[:16]}… from its metadata: refusing a modified or truncated file")
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {weights_path} is not a valid safetensors file: {exc}") from exc
    model = LSTMPredictor(stored.model)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {weights_path} does not fit model {stored.model}: "
                              f"{str(exc).splitlines()[0]}") from exc
    model.eval()
    return Checkpoint(model, stored, metadata, weights_path)


def load_or_train(config: TrainConfig, cache_dir: Path | None = None, on_epoch=None,
                  on_train_start=None) -> tuple[Checkpoint, bool]:
    """Reuse the cached checkpoint for this exact config, or train and cache one.

    Returns the checkpoint and whether it was freshly trained.
    """
    weights_path, meta_path = paths_for(cache_dir or default_cache_dir(), config)
    if weights_path.exists() and meta_path.exists():
        return load(weights_path, meta_path, expected=config), False
    if on_train_start is not None:
        on_train_start()
    result = train(config, on_epoch=on_epoch)
    save(result, config, weights_path, meta_path)
    return load(weights_path, meta_path, expected=config), True
