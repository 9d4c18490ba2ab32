"""TorchScript: scripted, frozen, optimised for inference, saved to a file and loaded back."""

from __future__ import annotations

import warnings

import torch

from backends.artifacts import Artifact
from backends.base import Backend, Session, Target, TorchSession, copy_model, torch_reason
from harness.model import LSTMPredictor


class TorchScriptSession(TorchSession):
    def __init__(self, fn: torch.jit.ScriptModule, target: Target, artifact: Artifact) -> None:
        super().__init__(fn, target)
        self._artifact = artifact

    def diagnostics(self) -> dict:
        return {"artifact_bytes": self._artifact.size_bytes, "artifact_sha256": self._artifact.sha256}


class TorchScriptBackend(Backend):
    name = "torchscript"
    summary = "torch.jit.script + freeze + optimize_for_inference, round-tripped through a file"

    def unavailable_reason(self, target: Target) -> str | None:
        return torch_reason(target)

    def prepare(self, model: LSTMPredictor, target: Target) -> Session:
        path = target.workdir / f"lstm-{target.device}-{target.dtype}.torchscript.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            # torch.jit is deprecated upstream; TorchScript is still a backend users ship.
            warnings.simplefilter("ignore", DeprecationWarning)
            scripted = torch.jit.script(copy_model(model, target))
            frozen = torch.jit.optimize_for_inference(torch.jit.freeze(scripted.eval()))
            torch.jit.save(frozen, str(path))
            artifact = Artifact.record(path)
            loaded = torch.jit.load(str(artifact.verified_path()), map_location=target.device)
        return TorchScriptSession(loaded.eval(), target, artifact)
