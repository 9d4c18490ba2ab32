"""The backend contract: build from the trained model for a target, run a batch, say why not.

Modelled on Polygraphy's runners: a ``Backend`` knows whether it can serve a target and how
to prepare a ``Session``; a ``Session`` only runs. Everything the timer needs to stay honest
(placing inputs on the device outside the clock, synchronising, reading outputs back) is
part of the session so that no caller has to know a runtime's quirks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from harness.core.errors import BackendUnavailableError
from harness.core.model import LSTMPredictor
from harness.core.targets import DEVICES, DTYPES, QUANTISED

TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Target:
    """Where and how a backend should run."""

    device: str  # "cpu" or "cuda"
    dtype: str  # one of harness.core.targets.DTYPES
    workdir: Path  # where artifacts (ONNX, TorchScript files) are written
    threads: int  # intra-op threads the backend's own runtime should use
    ort_allow_spinning: bool = False
    allow_tf32: bool = False
    # (path, sha256) of artifacts an earlier worker of this run built, which this one may
    # load instead of building them again (each load checks the hash, and the worker is
    # itself checked before its rounds count).
    reuse: tuple[tuple[str, str], ...] = ()
    # The (batch, seq_len) shapes the run will time, so that a backend that builds for fixed
    # shapes ahead of time builds those while it prepares (other shapes it meets later).
    shapes: tuple[tuple[int, int], ...] = ()

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    @property
    def torch_dtype(self) -> torch.dtype:
        return TORCH_DTYPES[self.dtype]


class Session(ABC):
    """A prepared backend. ``run`` is the only call inside the timed region."""

    @abstractmethod
    def to_native(self, x: np.ndarray) -> Any:
        """Place a float32 batch where ``run`` wants it (device, dtype). Not timed."""

    @abstractmethod
    def run(self, x: Any) -> Any:
        """One forward pass on a native input; returns the native output."""

    @abstractmethod
    def to_numpy(self, y: Any) -> np.ndarray:
        """Read a native output back as a float64 array of shape (batch, output_size)."""

    def synchronize(self) -> None:  # noqa: B027 - a no-op is the right default on CPU
        """Block until all work this session queued has finished (no-op on CPU)."""

    def diagnostics(self) -> dict:
        """Backend-specific facts for the results: artifact size, graph counts, ..."""
        return {}

    def artifacts(self) -> dict[str, str]:
        """Path -> sha256 of the files this session loaded, for a later worker to reuse."""
        return {}

    @property
    def uses_current_cuda_stream(self) -> bool:
        """True when all of ``run``'s device work goes to torch's current CUDA stream, so CUDA
        events on that stream can time it. Runtimes with streams of their own say False and
        are timed by the host clock after a full synchronise."""
        return False

    def rollout(self, window: np.ndarray, horizon: int) -> np.ndarray:
        """Forecast ``horizon`` steps from ``window`` (batch, seq_len, input), feeding each
        prediction back as the newest sample; returns float64 (batch, horizon, output).

        This default goes through the host every step; sessions that can keep the window on
        their device override it.
        """
        return feedback_rollout(lambda w: self.to_numpy(self.run(self.to_native(w))), window, horizon)


def feedback_rollout(predict: Callable[[np.ndarray], np.ndarray], window: np.ndarray,
                     horizon: int) -> np.ndarray:
    """Autoregressive rollout of any ``predict(window) -> (batch, output)`` on the host.

    The window is kept in float64 so that a float64 predictor (the reference) loses nothing.
    """
    window = np.asarray(window, dtype=np.float64)
    outputs = []
    for _ in range(horizon):
        y = np.asarray(predict(window), dtype=np.float64)
        outputs.append(y)
        window = np.concatenate((window[:, 1:], y[:, np.newaxis, :]), axis=1)
    return np.stack(outputs, axis=1)


class Backend(ABC):
    """A runtime the harness can run the model through.

    Besides preparing sessions, a backend declares what the engine needs to plan and record
    a run, so that a new backend is one module plus its registration: the devices it can
    serve, whether a run without ``--backends`` includes it, how its rows are timed, and
    the versions of the libraries behind it.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    devices: ClassVar[tuple[str, ...]] = DEVICES  # the devices it can serve at all
    dtypes: ClassVar[tuple[str, ...]] = DTYPES  # the dtypes it can serve at all
    # A run without --backends includes it on each of its devices.
    in_default_set: ClassVar[bool] = False
    # False: timed on its own after the others, outside their interleaved rounds.
    interleaved: ClassVar[bool] = True
    # False: left out of an explicit --backends list on a device it does not serve, rather
    # than shown as an unavailable row there.
    listed_off_device: ClassVar[bool] = True

    def computes_in(self, dtype: str) -> str:
        """The dtype its rows and checks report for a run in ``dtype``."""
        return dtype

    @classmethod
    def versions(cls) -> dict[str, str | None]:
        """The libraries behind this backend and their versions (None: not installed)."""
        return {}

    @classmethod
    def machine_facts(cls) -> dict:
        """What this backend's runtime reports about the machine (providers, devices)."""
        return {}

    @classmethod
    def gemm_gflops(cls, device: str, threads: int) -> float | None:
        """The sustained fp32 GEMM rate of this backend's own runtime, where it has a GEMM
        of its own that torch and NumPy do not already measure; counts towards the peak."""
        return None

    def unavailable_reason(self, target: Target) -> str | None:
        """None if this backend can serve ``target``, else a one-line reason. Cheap: the
        runner asks it in the parent process before every backend it opens."""
        return None

    def start_reason(self, target: Target) -> str | None:
        """None if this backend's runtime really starts for ``target``, else why not: asked
        by ``doctor`` after ``unavailable_reason``, where a run learns it by preparing. It may
        cost seconds and device memory."""
        return None

    def environment(self, target: Target) -> dict[str, str]:
        """Environment variables that must be in force before CUDA and this backend's libraries
        start in the process that runs ``target``; an isolated worker sets them first."""
        return {}

    @abstractmethod
    def prepare(self, model: LSTMPredictor, target: Target) -> Session:
        """Build a session from the trained model. Raises BackendError on failure."""

    def prepare_step(self, model: LSTMPredictor, target: Target) -> Session:
        """Optional: a streaming step session. Its native input is a tuple (x_t, h, c) with
        x_t (batch, input) and states (num_layers, batch, hidden); ``run`` returns (y_t, h', c');
        ``to_native`` and ``to_numpy`` convert such tuples element by element. The outputs may
        live in buffers the session reuses: y_t is valid until the stream's next step, and
        h', c' until the step after, which the stream's next step feeds them to."""
        raise BackendUnavailableError("no streaming step model")


def module_version(module: str) -> str | None:
    """A library's ``__version__``, None where it is not installed."""
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def cuda_reason(target: Target) -> str | None:
    if target.device == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available to torch on this machine"
    return None


class TorchSession(Session):
    """A session around any torch callable taking and returning tensors on one device."""

    def __init__(self, fn: Any, target: Target) -> None:
        self._fn = fn
        self._device = target.torch_device
        self._dtype = target.torch_dtype

    def to_native(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).to(self._device, self._dtype)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self._fn(x)

    def to_numpy(self, y: torch.Tensor) -> np.ndarray:
        return y.detach().to("cpu", torch.float64).numpy()

    def synchronize(self) -> None:
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)

    @property
    def uses_current_cuda_stream(self) -> bool:
        return self._device.type == "cuda"

    def rollout(self, window: np.ndarray, horizon: int) -> np.ndarray:
        """The window stays a device tensor: each prediction is concatenated and the oldest
        sample sliced off on the device, with one host copy for the whole forecast."""
        x = self.to_native(window)
        forecast = None
        with torch.inference_mode():
            for t in range(horizon):
                y = self.run(x)
                if forecast is None:
                    forecast = y.new_empty((y.shape[0], horizon, *y.shape[1:]))
                # Copied out at once: a CUDA-graph replay may reuse y's memory on the next call.
                forecast[:, t] = y
                x = torch.cat((x[:, 1:], y.unsqueeze(1).to(x.dtype)), dim=1)
            return self.to_numpy(forecast)


class TorchStepSession(TorchSession):
    """A streaming step session around a torch callable ``fn(x_t, h, c) -> (y_t, h', c')``."""

    def to_native(self, xs: tuple[np.ndarray, ...]) -> tuple[torch.Tensor, ...]:
        return tuple(super(TorchStepSession, self).to_native(x) for x in xs)

    def run(self, x: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        with torch.inference_mode():
            return tuple(self._fn(*x))

    def to_numpy(self, ys: tuple[torch.Tensor, ...]) -> tuple[np.ndarray, ...]:
        return tuple(super(TorchStepSession, self).to_numpy(y) for y in ys)


def copy_model(model: LSTMPredictor, target: Target) -> LSTMPredictor:
    """An independent copy of the model on the target's device and dtype, in eval mode."""
    clone = LSTMPredictor(model.config)
    clone.load_state_dict(model.state_dict())
    return clone.to(target.torch_device, target.torch_dtype).eval()


def torch_reason(target: Target) -> str | None:
    """Shared availability rule of the torch backends."""
    if target.dtype in QUANTISED:
        return (f"no {target.dtype} path: torch's only one for an LSTM is dynamic quantisation, "
                "which the torch-int8 backend runs")
    if target.dtype not in TORCH_DTYPES:
        return f"unknown dtype {target.dtype!r}"
    return cuda_reason(target)
