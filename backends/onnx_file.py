"""The verified ONNX file that every backend reading ONNX loads: exported in a fresh
interpreter (``backends.onnx_export``), hashed, or reused from an earlier worker of the run.

Each backend names its own file (``stem``), so two backends sharing a run's work directory
never overwrite the file the other verified.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from backends.artifacts import Artifact
from backends.base import Target
from backends.onnx_export import STEP_DYNAMIC, WINDOW_DYNAMIC, fixed_axes
from harness.core.errors import BackendError
from harness.core.model import LSTMPredictor

REUSED = "reused from an earlier worker of this run"  # the exporter of a reused file


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
    target.workdir.mkdir(parents=True, exist_ok=True)
    return target.workdir / f"{stem}{'-step' if step else ''}-{dtype or target.dtype}.onnx"


def verified_onnx(model: LSTMPredictor, target: Target, stem: str, step: bool,
                  dtype: str = "fp32", exporter: str = "auto") -> tuple[Artifact, tuple[float, str]]:
    """The model (or its step model) as an ONNX file in ``dtype``, exported now or reused,
    hashed, checked by the ONNX checker and proven to keep batch and seq_len dynamic; with the
    export time and the exporter that wrote it."""
    import onnx

    path = onnx_path(target, stem, step, dtype)
    artifact = Artifact.reused(path, target)
    if artifact is None:
        export = export_in_subprocess(model, path, step=step, dtype=dtype, exporter=exporter)
        artifact = Artifact.record(path)
    else:
        export = (0.0, REUSED)
    onnx_model = onnx.load(str(artifact.verified_path()))
    onnx.checker.check_model(onnx_model)
    check_dynamic_axes(onnx_model, step)
    return artifact, export

