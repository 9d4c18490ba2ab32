"""TorchScript: scripted, frozen, optimised for inference, saved to a file and loaded back."""

from __future__ import annotations

import warnings

import torch

from backends.artifacts import Artifact
from backends.base import Backend, Session, Target, TorchSession, TorchStepSession, copy_model, torch_reason
from harness.core.model import LSTMPredictor, LSTMStep


class TorchScriptSession(TorchSession):
    def __init__(self, fn: torch.jit.ScriptModule, target: Target, artifact: Artifact) -> None:
        super().__init__(fn, target)
        self._artifact = artifact

    def diagnostics(self) -> dict:
        return self._artifact.facts()

    def artifacts(self) -> dict[str, str]:
        return {str(self._artifact.path): self._artifact.sha256}


class TorchScriptStepSession(TorchStepSession, TorchScriptSession):
    """The streaming step model, scripted and round-tripped the same way."""


def script_round_trip(module: torch.nn.Module, target: Target, kind: str
                      ) -> tuple[torch.jit.ScriptModule, Artifact]:
    """Script, freeze, optimise, save, verify and load back ``module`` (or load the file an
    earlier worker of the run saved, where the target lists it)."""
    path = target.workdir / f"lstm-{kind}-{target.device}-{target.dtype}.torchscript.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # torch.jit is deprecated upstream; TorchScript is still a backend users ship.
        warnings.simplefilter("ignore", DeprecationWarning)
        artifact = Artifact.reused(path, target)
        if artifact is None:
            scripted = torch.jit.script(module)
            frozen = torch.jit.optimize_for_inference(torch.jit.freeze(scripted.eval()))
            torch.jit.save(frozen, str(path))
            artifact = Artifact.record(path)
        loaded = torch.jit.load(str(artifact.verified_path()), map_location=target.device)
    return loaded.eval(), artifact


class TorchScriptBackend(Backend):
    name = "torchscript"
    summary = "torch.jit.script + freeze + optimize_for_inference, round-tripped through a file"
    in_default_set = True

    def unavailable_reason(self, target: Target) -> str | None:
        return torch_reason(target)

    def prepare(self, model: LSTMPredictor, target: Target) -> Session:
        fn, artifact = script_round_trip(copy_model(model, target), target, "window")
        return TorchScriptSession(fn, target, artifact)

    def prepare_step(self, model: LSTMPredictor, target: Target) -> Session:
        fn, artifact = script_round_trip(LSTMStep(copy_model(model, target)), target, "step")
        return TorchScriptStepSession(fn, target, artifact)
