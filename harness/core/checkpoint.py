"""Checkpoints that load without unpickling: the harness's own, and the files users save.

The harness's own are safetensors weights plus JSON metadata that records the weights'
SHA-256; loading verifies it, so a tampered or truncated file is refused before any tensor
is used. A user's file (a torch.save'd state_dict or a safetensors file) is read by
``harness.core.weights_file``; its model's config is read from the tensors' shapes, and
every tensor must then have the shape that config gives it.

A model a run covers is a ``ModelSource``: a training config (trained, or with ``epochs``
0 the seeded initial weights, cached either way) or the path of a file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from harness.core.data import SineConfig
from harness.core.environment import library_versions
from harness.core.errors import CheckpointError, InputError
from harness.core.model import LSTMPredictor, ModelConfig, infer_config, parameter_shapes
from harness.core.training import TrainConfig, TrainResult, train
from harness.core.weights_file import read_tensors

FORMAT_VERSION = 1
HARNESS = "harness"  # the format of the harness's own checkpoints
ModelSource = TrainConfig | Path  # a config the harness trains (or seeds) and caches, or a file
MAX_PROBLEMS = 12  # key problems named in one line; the rest are counted


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
    """A loaded model. ``config`` is how the harness trained it, None for a user's file;
    ``metadata`` is the harness's JSON record, or for a user's file its format and hash."""

    model: LSTMPredictor
    config: TrainConfig | None
    metadata: dict
    weights_path: Path

    @property
    def sha256(self) -> str:
        """The SHA-256 of the weights file: the model's identity in every result."""
        return self.metadata["weights_sha256"]

    @property
    def source(self) -> str:
        """``trained`` or ``seeded`` (epochs 0) by the harness, or ``file`` for a user's."""
        if self.config is None:
            return "file"
        return "seeded" if self.config.epochs == 0 else "trained"

    def info(self) -> dict:
        """The results' record of this model (``docs/results-schema.md``, ``model``)."""
        model_config = self.model.config
        train_fields = None if self.config is None else \
            {k: v for k, v in self.config.to_dict().items() if k not in ("model", "data")}
        return {"weights_sha256": self.sha256, "val_mse": self.metadata.get("val_mse"),
                "config": model_config.to_dict(), "label": model_config.label,
                "source": self.source, "format": self.metadata.get("format", HARNESS),
                "path": str(self.weights_path), "train": train_fields,
                "file_dtypes": self.metadata.get("file_dtypes")}


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
                  on_train_start=None, retrain: bool = False) -> tuple[Checkpoint, bool]:
    """Reuse the cached checkpoint for this exact config, or train and cache one (with
    ``retrain``, always; the cached one is replaced only once the new one is written).

    Returns the checkpoint and whether it was freshly trained.
    """
    weights_path, meta_path = paths_for(cache_dir or default_cache_dir(), config)
    if not retrain and weights_path.exists() and meta_path.exists():
        return load(weights_path, meta_path, expected=config), False
    if on_train_start is not None:
        on_train_start()
    result = train(config, on_epoch=on_epoch)
    save(result, config, weights_path, meta_path)
    return load(weights_path, meta_path, expected=config), True


def _harness_pair(path: Path) -> tuple[Path, Path] | None:
    """The weights and JSON record of a harness checkpoint that ``path`` names (either of
    the two files); None for any other file."""
    meta = path if path.suffix == ".json" else path.with_suffix(".json")
    if path.suffix not in (".json", ".safetensors") or not meta.is_file():
        return None
    try:
        record = json.loads(meta.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return None
    if not (isinstance(record, dict) and "format_version" in record and "weights_sha256" in record):
        return None
    name = str(record.get("weights_file", f"{meta.stem}.safetensors"))
    if Path(name).name != name or name in ("", ".", ".."):
        raise CheckpointError(f"{meta}: expected the name of a weights file beside it in "
                              f"weights_file, got {name!r}")
    return meta.with_name(name), meta


def files_read(path: Path) -> tuple[Path, ...]:
    """Every file ``open_checkpoint(path)`` reads: a harness checkpoint's weights and record,
    or the one file."""
    return _harness_pair(path) or (path,)


def open_checkpoint(path: Path) -> Checkpoint:
    """Any checkpoint a user may point at: the harness's own (its weights or its JSON
    record), a torch.save'd state_dict, or a safetensors file. Refuses, with one line, a
    file it cannot read safely or whose tensors do not make an LSTMPredictor."""
    pair = _harness_pair(path)
    if pair is not None:
        return load(*pair)
    state, fmt = read_tensors(path)
    model = model_from_state(state, path)
    metadata = {"format": fmt, "weights_sha256": sha256_file(path), "val_mse": None,
                "file_dtypes": sorted({str(v.dtype).removeprefix("torch.") for v in state.values()})}
    return Checkpoint(model, None, metadata, path)


def _shape(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return str(tuple(value.shape))
    return f"a {type(value).__name__}"


def model_from_state(state: dict[str, object], origin: Path) -> LSTMPredictor:
    """An LSTMPredictor holding ``state``, its config read from the tensors' shapes; every
    key missing, unexpected, of the wrong shape or not floating-point is named, with the
    shape expected and found, in one CheckpointError."""
    shapes = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    try:
        config = infer_config(shapes)
    except InputError as exc:
        raise CheckpointError(f"{origin}: the tensors' shapes give no valid model: {exc}") from None
    if config is None:
        found = ", ".join(f"{k} {_shape(v)}" for k, v in list(state.items())[:MAX_PROBLEMS]) or "none"
        raise CheckpointError(
            f"{origin} holds no LSTMPredictor weights: expected the keys of "
            "LSTM(batch_first=True) as `lstm` and Linear as `fc` (lstm.weight_ih_l0, "
            f"lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0, fc.weight, fc.bias), found {found}")
    expected = parameter_shapes(config)
    problems = []
    for key, shape in expected.items():
        value = state.get(key)
        if value is None:
            problems.append(f"missing {key} (expected {shape})")
        elif not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
            problems.append(f"{key}: expected {shape}, found {_shape(value)}")
        elif not value.is_floating_point():
            problems.append(f"{key}: expected floating-point values, found {value.dtype}")
        elif not bool(torch.isfinite(value).all()):
            problems.append(f"{key}: expected finite values, found NaN or infinity")
    problems += [f"unexpected {key} (found {_shape(v)})" for key, v in state.items()
                 if key not in expected]
    if problems:
        more = len(problems) - MAX_PROBLEMS
        listed = "; ".join(problems[:MAX_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")
        sizes = ", ".join(f"{k} {v}" for k, v in config.to_dict().items())
        raise CheckpointError(f"{origin} does not fit an LSTMPredictor with the sizes its "
                              f"shapes give ({sizes}): {listed}")
    model = LSTMPredictor(config)
    model.load_state_dict({k: state[k].detach().to(torch.float32) for k in expected})
    return model.eval()


def source_record(source: ModelSource) -> dict:
    """How a scenario names a model, for the results: a checkpoint path, or the sizes and
    the training (epochs 0: seeded initial weights) the harness gives it."""
    if isinstance(source, Path):
        return {"checkpoint": str(source)}
    return {**source.model.to_dict(), "epochs": source.epochs, "seed": source.seed}


def obtain(source: ModelSource, cache_dir: Path | None = None, on_epoch=None,
           on_train_start=None) -> tuple[Checkpoint, bool]:
    """The model ``source`` names: a file opened, or a config loaded from the cache or trained
    (with ``epochs`` 0, its seeded initial weights saved). Returns it and whether it was
    trained just now."""
    if isinstance(source, Path):
        return open_checkpoint(source), False
    return load_or_train(source, cache_dir, on_epoch, on_train_start)
