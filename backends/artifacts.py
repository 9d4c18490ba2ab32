"""Artifacts a backend writes and later loads are verified by SHA-256 first.

A run's later worker processes may load an artifact an earlier one wrote, instead of
building it again, when the target lists it with its hash (``Target.reuse``) and the file
still hashes to that. Artifacts that take long to build (ONNX exports, AOTInductor packages)
are also cached across runs under a name made from everything that changes them, each with
a sidecar recording its hash (``publish``, ``cached``).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.checkpoint import sha256_file
from harness.core.errors import BackendError

if TYPE_CHECKING:
    from torch.nn import Module

    from backends.base import Target


def weights_sha256(model: Module) -> str:
    """The SHA-256 of a module's weights, by name, whatever their dtype."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        # Viewed as bytes: NumPy has no bfloat16.
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def key_digest(key: dict) -> str:
    """A short name for a cache key: the SHA-256 of its JSON."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


def partial_path(path: Path) -> Path:
    """Where a build writes before ``publish`` moves it into place (one per process)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f"{path.stem}.{os.getpid()}.partial{path.suffix}")


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


@dataclass(frozen=True)
class Artifact:
    path: Path
    sha256: str

    @classmethod
    def record(cls, path: Path) -> Artifact:
        return cls(path, sha256_file(path))

    @classmethod
    def reused(cls, path: Path, target: Target) -> Artifact | None:
        """The artifact at ``path`` when ``target`` lists it for reuse and it still hashes
        to what was recorded; None means it must be built."""
        sha = dict(target.reuse).get(str(path))
        if sha is None or not path.is_file() or sha256_file(path) != sha:
            return None
        return cls(path, sha)

    def facts(self) -> dict:
        return {"artifact_bytes": self.size_bytes, "artifact_sha256": self.sha256}

    def verified_path(self) -> Path:
        """The path, once its content still hashes to what was recorded at export."""
        actual = sha256_file(self.path)
        if actual != self.sha256:
            raise BackendError(f"artifact {self.path} has SHA-256 {actual[:16]}…, expected "
                               f"{self.sha256[:16]}… as exported: refusing to load it")
        return self.path

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


def publish(partial: Path, path: Path, record: dict[str, Any]) -> Artifact:
    """Move a finished build into the cache and write its sidecar (its hash and ``record``),
    each atomically: another process sees the old file, or the new one with its sidecar."""
    os.replace(partial, path)
    artifact = Artifact.record(path)
    sidecar = _sidecar(path)
    tmp = sidecar.with_name(f"{sidecar.stem}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"sha256": artifact.sha256, **record, "host": platform.node()},
                              indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, sidecar)
    return artifact


def cached(path: Path) -> tuple[Artifact, dict[str, Any]] | None:
    """The cached artifact at ``path`` and its sidecar's record, if the sidecar records the
    hash the file still has; None means it must be built."""
    sidecar = _sidecar(path)
    if not (path.is_file() and sidecar.is_file()):
        return None
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
        recorded = record["sha256"]
    except (ValueError, KeyError, TypeError):
        return None
    return (Artifact(path, recorded), record) if sha256_file(path) == recorded else None
