"""Process isolation: each backend prepared and measured in its own long-lived worker process.

A ``WorkerHandle`` has the ``Handle`` interface, but every method is a call over a pipe to a
spawned worker that holds a ``LocalHandle``. A backend that segfaults, aborts, hangs or raises
then costs only its own rows: the parent sees the dead worker (signal name from its exit code)
or the timeout, kills it, and raises ``BackendError``, which the runner records.

Timed rounds run inside the worker with the worker's clock; only the seconds per call cross
the pipe, so the pipe's round trip is outside every measurement.
"""

from __future__ import annotations

import multiprocessing
import signal
import time
from multiprocessing.connection import Connection, wait
from typing import Any

import numpy as np
import torch

from backends.base import Backend, Target
from harness.errors import BackendError, BackendUnavailableError
from harness.handles import LocalHandle, describe
from harness.memory import MemoryUse
from harness.model import LSTMPredictor, ModelConfig
from harness.settings import ProcessSettings, apply

_CONTEXT = multiprocessing.get_context("spawn")  # fork would copy torch's threads and CUDA state
_CLOSE_GRACE_S = 5.0
# Spawning and importing torch is the harness's own cost, not the backend's: it has its own,
# generous limit, so a short --backend-timeout on a loaded machine does not fail the start.
_START_TIMEOUT_S = 300.0


class _Worker:
    """The worker's side: one LocalHandle and the timers made from it; ``rpc_*`` are the calls."""

    def __init__(self, handle: LocalHandle) -> None:
        self.handle = handle
        self.timers: dict[int, Any] = {}
        self.timer_count = 0

    def rpc_predict(self, x: np.ndarray) -> np.ndarray:
        return self.handle.predict(x)

    def _keep(self, timer: Any) -> int:
        # One shape is measured at a time, with at most two timers (streaming: the step and
        # the window); older shapes' inputs are not needed again.
        self.timer_count += 1
        self.timers = {k: v for k, v in self.timers.items() if k == self.timer_count - 1}
        self.timers[self.timer_count] = timer
        return self.timer_count

    def rpc_timer(self, batches: list[np.ndarray]) -> int:
        return self._keep(self.handle.timer(batches))

    def rpc_rollout_timer(self, windows: list[np.ndarray], horizon: int) -> int:
        return self._keep(self.handle.rollout_timer(windows, horizon))

    def rpc_step_timer(self, prime: np.ndarray, samples: list[np.ndarray]) -> int:
        return self._keep(self.handle.step_timer(prime, samples))

    def rpc_rollout(self, window: np.ndarray, horizon: int) -> np.ndarray:
        return self.handle.rollout(window, horizon)

    def rpc_stream(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.handle.stream(x)

    def rpc_warm_up(self, timer_id: int, seconds: float) -> None:
        self.timers[timer_id].warm_up(seconds)

    def rpc_calibrate(self, timer_id: int, min_round_s: float) -> int:
        return self.timers[timer_id].calibrate(min_round_s)

    def rpc_round(self, timer_id: int) -> float:
        return self.timers[timer_id].round()

    def rpc_diagnostics(self) -> dict:
        return self.handle.diagnostics()

    def rpc_begin_memory(self) -> None:
        self.handle.begin_memory()

    def rpc_end_memory(self) -> MemoryUse:
        return self.handle.end_memory()

    def rpc_transfer_ms(self, x: np.ndarray) -> tuple[float, float]:
        return self.handle.transfer_ms(x)


def _serve(conn: Connection, backend_cls: type[Backend], weights: dict[str, np.ndarray],
           model_config: ModelConfig, target: Target, settings: ProcessSettings,
           first_batch: np.ndarray, with_step: bool) -> None:
    """Worker main: prepare, report, then answer calls until told to close or the parent goes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    apply(settings)
    conn.send(("ok", "started"))
    try:
        model = LSTMPredictor(model_config)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
        handle = LocalHandle.open(backend_cls(), model.eval(), target, first_batch,
                                  with_step=with_step)
    except BackendUnavailableError as exc:
        conn.send(("unavailable", str(exc)))
        return
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which records it
        conn.send(("error", describe(exc)))
        return
    conn.send(("ok", (handle.prepare_s, handle.prepare_rss_mb, handle.first_call_ms)))
    worker = _Worker(handle)
    try:
        while (request := conn.recv())[0] != "close":
            method, args = request
            try:
                reply = ("ok", getattr(worker, f"rpc_{method}")(*args))
            except Exception as exc:  # noqa: BLE001
                reply = ("error", describe(exc))
            conn.send(reply)
        handle.close()
        conn.send(("ok", None))
    except (EOFError, OSError):  # the parent is gone: nobody to answer
        return


def death_reason(exitcode: int | None) -> str:
    """``SIGSEGV``, ``SIGABRT``, ... for a worker killed by a signal, else its exit status."""
    if exitcode is not None and exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit status {exitcode}"


class RemoteTimer:
    """A ``TimerLike`` whose rounds run in the worker and return seconds per call."""

    def __init__(self, handle: WorkerHandle, timer_id: int) -> None:
        self._handle = handle
        self._id = timer_id
        self.calls_per_round = 1

    def warm_up(self, seconds: float) -> None:
        self._handle.call("warm_up", self._id, seconds)

    def calibrate(self, min_round_s: float) -> int:
        self.calls_per_round = self._handle.call("calibrate", self._id, min_round_s)
        return self.calls_per_round

    def round(self) -> float:
        return self._handle.call("round", self._id)


class WorkerHandle:
    """A ``Handle`` whose session lives in a spawned worker process."""

    def __init__(self, name: str, process: Any, conn: Connection, timeout_s: float) -> None:
        self.name = name
        self._process = process
        self._conn = conn
        self._timeout_s = timeout_s
        self._failure: str | None = None
        self.prepare_s = self.prepare_rss_mb = self.first_call_ms = 0.0
        self.startup_s = 0.0  # spawn + imports + settings: the price of isolation

    @classmethod
    def open(cls, backend: Backend, model: LSTMPredictor, target: Target, first_batch: np.ndarray,
             settings: ProcessSettings, timeout_s: float, with_step: bool = False) -> WorkerHandle:
        """Spawn the worker, which prepares the backend and makes the first call.

        The model travels as plain arrays and its config, never as a pickled module.
        """
        weights = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
        parent_conn, child_conn = _CONTEXT.Pipe()
        process = _CONTEXT.Process(
            target=_serve, name=f"harness-{backend.name}",
            args=(child_conn, type(backend), weights, model.config, target, settings, first_batch,
                  with_step))
        start = time.perf_counter()
        process.start()
        child_conn.close()
        handle = cls(backend.name, process, parent_conn, timeout_s)
        try:
            handle._receive("start-up", _START_TIMEOUT_S)
            handle.startup_s = time.perf_counter() - start
            handle.prepare_s, handle.prepare_rss_mb, handle.first_call_ms = handle._receive("prepare")
        except BaseException:  # a failed start, or Ctrl-C while preparing: no orphan left
            handle.close()
            raise
        return handle

    def call(self, method: str, *args: Any) -> Any:
        """One call in the worker; ``BackendError`` if it raised, died or timed out."""
        if self._failure:
            raise BackendError(self._failure)
        try:
            self._conn.send((method, args))
        except OSError:
            self._fail(f"{death_reason(self._wait_exit())}: the worker died before {method}")
        return self._receive(method)

    def _receive(self, what: str, timeout_s: float | None = None) -> Any:
        timeout_s = timeout_s or self._timeout_s
        ready = wait([self._conn, self._process.sentinel], timeout_s)
        if self._conn in ready:
            try:
                status, value = self._conn.recv()
            except (EOFError, OSError):
                pass  # the worker died while answering; the exit code says how
            else:
                if status == "ok":
                    return value
                if status == "unavailable":
                    raise BackendUnavailableError(value)
                raise BackendError(f"{value} (in {what})")
        if not ready:
            self._fail(f"timeout: no answer to {what} within {timeout_s:g} s")
        self._fail(f"{death_reason(self._wait_exit())}: the worker died during {what}")

    def _wait_exit(self) -> int | None:
        self._process.join(_CLOSE_GRACE_S)
        return self._process.exitcode

    def _fail(self, reason: str) -> None:
        self._failure = reason
        self._stop()
        raise BackendError(reason)

    def _stop(self) -> None:
        if self._process.is_alive():
            self._process.kill()
        self._process.join()
        self._conn.close()

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.call("predict", x)

    def timer(self, batches: list[np.ndarray]) -> RemoteTimer:
        return RemoteTimer(self, self.call("timer", batches))

    def rollout(self, window: np.ndarray, horizon: int) -> np.ndarray:
        return self.call("rollout", window, horizon)

    def rollout_timer(self, windows: list[np.ndarray], horizon: int) -> RemoteTimer:
        return RemoteTimer(self, self.call("rollout_timer", windows, horizon))

    def stream(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return tuple(self.call("stream", x))

    def step_timer(self, prime: np.ndarray, samples: list[np.ndarray]) -> RemoteTimer:
        return RemoteTimer(self, self.call("step_timer", prime, samples))

    def diagnostics(self) -> dict:
        return {**self.call("diagnostics"), "isolation_startup_s": self.startup_s}

    def begin_memory(self) -> None:
        self.call("begin_memory")

    def end_memory(self) -> MemoryUse:
        return self.call("end_memory")

    def transfer_ms(self, x: np.ndarray) -> tuple[float, float]:
        return tuple(self.call("transfer_ms", x))

    def close(self) -> None:
        """Ask the worker to finish; kill it if it does not within a few seconds."""
        if self._conn.closed:
            return
        self._failure = self._failure or "the worker was closed"
        try:
            self._conn.send(("close", ()))
            if self._conn.poll(_CLOSE_GRACE_S):
                self._conn.recv()
        except (OSError, EOFError):
            pass  # already dead: nothing to ask
        self._stop()
