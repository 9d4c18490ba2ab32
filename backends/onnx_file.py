"""The verified ONNX file that every backend reading ONNX loads: exported in a fresh
interpreter (``backends.onnx_export``), hashed, checked, and cached.

An export takes seconds to tens of seconds (the dynamo exporter), so a file is cached
across runs under a name made from everything that changes it (the weights, the model's
config, the dtype, window or step model, the exporter asked for, the exporter's own code and
the torch and onnx versions). ONNX Runtime and OpenVINO, which read the same export, load
the same file; every load first checks it still hashes to what was recorded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from backends.artifacts import Artifact, cached, key_digest, partial_path, publish, weights_sha256
from backends.base import Target
from backends.onnx_export import OPSET, STEP_DYNAMIC, WINDOW_DYNAMIC, fixed_axes
from harness.core.checkpoint import default_cache_dir, sha256_file
from harness.core.errors import BackendError
from harness.core.model import LSTMPredictor

EXPORTER_SOURCE = Path(__file__).with_name("onnx_export.py")


def cache_dir() -> Path:
    return default_cache_dir() / "onnx"


@dataclass(frozen=True)
class Export:
    """How a session's ONNX file came to be: exported by this process or found in the cache;
    the time this process spent exporting (0 unless it exported) and the exporter that wrote
    the file."""

    source: str  # "exported" or "cache"
    export_s: float
    exporter: str

    def facts(self) -> dict:
        return {"onnx_source": self.source, "export_s": self.export_s, "exporter": self.exporter}


@dataclass(frozen=True)
class ExportKey:
    """Everything that changes an exported file."""

    weights_sha256: str
    config: dict
    dtype: str
    step: bool
    exporter: str  # as asked for: "auto", "dynamo" or "torchscript"
    exporter_code: str  # the SHA-256 of backends/onnx_export.py
    opset: int
    torch: str
    onnx: str

    @classmethod
    def of(cls, model: LSTMPredictor, dtype: str, step: bool, exporter: str) -> ExportKey:
        import onnx
        import torch

        return cls(weights_sha256(model), model.config.to_dict(), dtype, step, exporter,
                   sha256_file(EXPORTER_SOURCE), OPSET, torch.__version__, onnx.__version__)

    def path(self) -> Path:
        kind = "step" if self.step else "window"
        return cache_dir() / f"lstm-{kind}-{self.dtype}-{key_digest(asdict(self))}.onnx"


def export_in_subprocess(model: LSTMPredictor, path: Path, step: bool = False, dtype: str = "fp32",
                         exporter: str = "auto") -> tuple[float, str]:
    """Export in a fresh interpreter (the step model with ``step``) in ``dtype``; returns the
    export time measured there and the exporter that wrote the file."""
    weights = path.with_suffix(".weights.safetensors")
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(weights))
    cmd = [sys.executable, "-m", "backends.onnx_export", "--weights", str(weights),
           "--config-json", json.dumps(model.config.to_dict()), "--out", str(path),
           "--dtype", dtype, "--exporter", exporter, *(["--step"] if step else [])]
    project_root = Path(__file__).resolve().parent.parent
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=project_root, check=False)
    weights.unlink(missing_ok=True)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BackendError(f"ONNX export failed (exit {done.returncode}): {tail}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return float(report["export_s"]), str(report["exporter"])


def check_dynamic_axes(onnx_model: Any, step: bool) -> None:
    """Batch and seq_len (the step model: batch) must be symbolic, or other shapes would be
    refused or wrong."""
    fixed = fixed_axes(onnx_model, (STEP_DYNAMIC if step else WINDOW_DYNAMIC)[0])
    if fixed:
        shapes = {inp.name: [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
                  for inp in onnx_model.graph.input}
        raise BackendError(f"exported ONNX inputs have fixed axes {fixed} (shapes {shapes}); "
                           "batch and seq_len must be dynamic")


def onnx_path(target: Target, stem: str, step: bool, dtype: str | None = None) -> Path:
    """A file of this run's own, in its work directory (what is derived from an export)."""
    target.workdir.mkdir(parents=True, exist_ok=True)
    return target.workdir / f"{stem}{'-step' if step else ''}-{dtype or target.dtype}.onnx"


def _export(model: LSTMPredictor, key: ExportKey) -> tuple[Artifact, Export]:
    """The file for ``key``: the cache's (an earlier run's, or another backend's or worker's
    of this run), or exported now and cached."""
    path = key.path()
    found = cached(path)
    if found is not None:
        return found[0], Export("cache", 0.0, str(found[1].get("exporter")))
    partial = partial_path(path)
    export_s, exporter = export_in_subprocess(model, partial, step=key.step, dtype=key.dtype,
                                              exporter=key.exporter)
    artifact = publish(partial, path, {"export_s": export_s, "exporter": exporter, "key": asdict(key)})
    return artifact, Export("exported", export_s, exporter)


def verified_onnx(model: LSTMPredictor, step: bool, dtype: str = "fp32", exporter: str = "auto"
                  ) -> tuple[Artifact, Export]:
    """The model (or its step model) as an ONNX file in ``dtype``, exported now or found,
    hashed, checked by the ONNX checker and proven to keep batch and seq_len dynamic."""
    import onnx

    artifact, export = _export(model, ExportKey.of(model, dtype, step, exporter))
    onnx_model = onnx.load(str(artifact.verified_path()))
    onnx.checker.check_model(onnx_model)
    check_dynamic_axes(onnx_model, step)
    return artifact, export
