"""AOTInductor: ``torch.export`` then ``aoti_compile_and_package``, one package per seq_len.

The traps, as seen with torch 2.13 on the CPU: exporting with seq_len dynamic fails (the LSTM
specialises it to the example's length), and a package built for one seq_len answers any
other with wrong numbers and no error; the LSTM also guards on batch != 1, so a package with
batch dynamic cannot serve batch 1. Exporting under torch's private while-loop LSTM
decomposition would keep seq_len dynamic, but it gives up the fused oneDNN LSTM and ran
several times slower than eager (docs/notes/settings-evidence.md). So this backend builds
one package per seq_len and batch kind (batch 1, or batch dynamic from 2), routes every call
to the package built for its shape (building one for a shape it has not seen), and refuses
to run without AOTInductor's runtime input check, which turns a call at the wrong length
into an error rather than a wrong answer.

A build is a C++ compile, so packages are cached across runs beside
the checkpoints, keyed by everything that changes them, and verified by SHA-256 before each
load; a later worker of a run loads what the first one built (``Target.reuse``).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backends.artifacts import Artifact, cached, key_digest, partial_path, publish, weights_sha256
from backends.base import Backend, Session, Target, TorchSession, TorchStepSession, copy_model
from backends.compiled import inductor_reason, loaded_dynamo
from harness.core.checkpoint import default_cache_dir
from harness.core.errors import BackendError
from harness.core.model import LSTMPredictor, LSTMStep
from harness.core.settings import AOTI_CHECK

STEP = "step"  # the package of the streaming step model, which has no seq_len
MAX_BATCH = 1 << 20


def cache_dir() -> Path:
    return default_cache_dir() / "aot-inductor"


@dataclass(frozen=True)
class PackageKey:
    """Everything that changes a package: the weights, what it was built for, and the
    compiler and instruction set that built it."""

    weights_sha256: str
    dtype: str
    seq_len: int | str  # a length, or STEP
    single: bool  # built for batch 1; else for any batch from 2
    device: str
    torch: str
    cpu_capability: str

    @classmethod
    def of(cls, model: torch.nn.Module, target: Target, seq_len: int | str, single: bool
           ) -> PackageKey:
        return cls(weights_sha256(model), target.dtype, seq_len, single, target.device,
                   torch.__version__, torch.backends.cpu.get_cpu_capability())

    @property
    def digest(self) -> str:
        return key_digest(asdict(self))


@dataclass(frozen=True)
class Package:
    """One loaded package and where it came from."""

    key: PackageKey
    artifact: Artifact
    source: str  # "built", "cache" (an earlier run's) or "reused" (this run's first worker)
    build_s: float
    runner: Any

    def facts(self) -> dict:
        return {"seq_len": self.key.seq_len, "batch": "1" if self.key.single else "2+",
                "source": self.source, "build_s": self.build_s,
                "bytes": self.artifact.size_bytes, "sha256": self.artifact.sha256}


EXPORT_NOISE = (r"The tensor attributes self\.lstm\._flat_weights", r"`isinstance\(treespec, LeafSpec\)`")


def _build(module: torch.nn.Module, example: tuple[torch.Tensor, ...], batch_axes: tuple[int, ...],
           path: Path, key: PackageKey) -> tuple[Artifact, float]:
    """Export (for batch 1, or with each input's batch axis in ``batch_axes`` dynamic from 2),
    compile and package to ``path`` (atomically, with a sidecar recording its hash); returns
    the artifact and the build time."""
    partial = partial_path(path)
    loaded_dynamo()  # export traces with dynamo: with the settings every result records
    batch = torch.export.Dim("batch", min=2, max=MAX_BATCH)
    shapes = None if key.single else tuple({axis: batch} for axis in batch_axes)
    start = time.perf_counter()
    with warnings.catch_warnings():
        # Export's notes on nn.LSTM's flat weights and pytree's deprecations speak to torch's
        # own code, not to the user, and would print in the middle of the run's progress.
        for message in EXPORT_NOISE:
            warnings.filterwarnings("ignore", message=message)
        try:
            exported = torch.export.export(module, example, dynamic_shapes=shapes)
            torch._inductor.aoti_compile_and_package(exported, package_path=str(partial))
        except Exception as exc:  # noqa: BLE001 - export and inductor raise many kinds
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise BackendError(f"AOTInductor could not build the package for seq_len "
                               f"{key.seq_len}, batch {'1' if key.single else '2+'}: {first}") from exc
    build_s = time.perf_counter() - start
    return publish(partial, path, {"build_s": build_s, "key": asdict(key)}), build_s


Variant = tuple[int | str, bool]  # (seq_len or STEP, built for batch 1)


class Packages:
    """The packages of one model by shape; calling it routes a batch to the package built
    for its shape, building that package first where there is none."""

    def __init__(self, model: torch.nn.Module, target: Target,
                 example: Callable[[int, int | str], tuple[torch.Tensor, ...]],
                 batch_axes: tuple[int, ...]) -> None:
        self._model = model
        self._target = target
        self._example = example  # (batch, seq_len) -> example inputs
        self._batch_axes = batch_axes
        self.loaded: dict[Variant, Package] = {}

    def get(self, seq_len: int | str, batch: int) -> Package:
        variant = (seq_len, batch == 1)
        if variant not in self.loaded:
            self.loaded[variant] = self._load(*variant)
        return self.loaded[variant]

    def _load(self, seq_len: int | str, single: bool) -> Package:
        key = PackageKey.of(self._model, self._target, seq_len, single)
        path = cache_dir() / f"lstm-{key.digest}.pt2"
        build_s, source = 0.0, "reused"
        artifact = Artifact.reused(path, self._target)
        if artifact is None and (found := cached(path)) is not None:
            source, artifact = "cache", found[0]
        if artifact is None:
            source = "built"
            example = self._example(1 if single else 2, seq_len)
            artifact, build_s = _build(self._model, example, self._batch_axes, path, key)
        runner = torch._inductor.aoti_load_package(str(artifact.verified_path()))
        return Package(key, artifact, source, build_s, runner)

    def window(self, x: torch.Tensor) -> torch.Tensor:
        return self.get(x.shape[1], x.shape[0]).runner(x)

    def step(self, x_t: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> Any:
        return self.get(STEP, x_t.shape[0]).runner(x_t, h, c)

    def diagnostics(self) -> dict:
        packages = [p.facts() for p in self.loaded.values()]
        return {"packages": packages, "build_s": sum(p["build_s"] for p in packages),
                "artifact_bytes": sum(p["bytes"] for p in packages),
                "runtime_check_inputs": os.environ.get(AOTI_CHECK) == "1"}

    def artifacts(self) -> dict[str, str]:
        return {str(p.artifact.path): p.artifact.sha256 for p in self.loaded.values()}


class AotSession(TorchSession):
    def __init__(self, fn: Callable[..., Any], target: Target, packages: Packages) -> None:
        super().__init__(fn, target)
        self._packages = packages

    def to_native(self, x: np.ndarray) -> torch.Tensor:
        # A package checks every stride, a size-1 dimension's too, which numpy and torch
        # call contiguous at any stride (a sample sliced from a window of a batch of 1):
        # a copy has the standard strides.
        return super().to_native(np.array(x, order="C"))

    def diagnostics(self) -> dict:
        return self._packages.diagnostics()

    def artifacts(self) -> dict[str, str]:
        return self._packages.artifacts()


class AotStepSession(TorchStepSession, AotSession):
    """The streaming step model as one package, batch dynamic."""


def require_runtime_check() -> None:
    if os.environ.get(AOTI_CHECK) != "1":
        raise BackendError(f"{AOTI_CHECK} is not 1: a package called at a seq_len it was not "
                           "built for would answer wrongly instead of raising "
                           "(harness.core.settings.aoti_runtime_check_inputs)")


class AotInductorBackend(Backend):
    name = "aot-inductor"
    summary = "torch.export + AOTInductor packages, one per seq_len, cached and hash-verified"
    in_default_set = True

    def unavailable_reason(self, target: Target) -> str | None:
        return inductor_reason(target)

    def prepare(self, model: LSTMPredictor, target: Target) -> Session:
        require_runtime_check()
        cfg = model.config

        def example(batch: int, seq_len: int | str) -> tuple[torch.Tensor, ...]:
            return (torch.zeros(batch, int(seq_len), cfg.input_size, dtype=target.torch_dtype,
                                device=target.torch_device),)

        packages = Packages(copy_model(model, target), target, example, batch_axes=(0,))
        for batch, seq_len in target.shapes:
            packages.get(seq_len, batch)
        return AotSession(packages.window, target, packages)

    def prepare_step(self, model: LSTMPredictor, target: Target) -> Session:
        require_runtime_check()
        cfg = model.config

        def example(batch: int, seq_len: int | str) -> tuple[torch.Tensor, ...]:
            state = torch.zeros(cfg.num_layers, batch, cfg.hidden_size, dtype=target.torch_dtype,
                                device=target.torch_device)
            return (torch.zeros(batch, cfg.input_size, dtype=target.torch_dtype,
                                device=target.torch_device), state, state.clone())

        packages = Packages(LSTMStep(copy_model(model, target)).eval(), target, example,
                            batch_axes=(0, 1, 1))
        for batch in sorted({batch for batch, _ in target.shapes}):
            packages.get(STEP, batch)
        return AotStepSession(packages.step, target, packages)
