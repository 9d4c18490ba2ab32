"""Artifacts a backend writes and later loads are verified by SHA-256 first.

A run's later worker processes may load an artifact an earlier one wrote, instead of
building it again, when the target lists it with its hash (``Target.reuse``) and the file
still hashes to that.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.core.checkpoint import sha256_file
from harness.core.errors import BackendError

if TYPE_CHECKING:
    from backends.base import Target


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
