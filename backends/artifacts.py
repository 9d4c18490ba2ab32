"""Artifacts a backend writes and later loads are verified by SHA-256 first."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.checkpoint import sha256_file
from harness.errors import BackendError


@dataclass(frozen=True)
class Artifact:
    path: Path
    sha256: str

    @classmethod
    def record(cls, path: Path) -> Artifact:
        return cls(path, sha256_file(path))

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
