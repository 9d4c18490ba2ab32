"""Process isolation: each backend prepared and measured in its own long-lived worker process.

A ``WorkerHandle`` is a ``Handle`` whose requests travel over a pipe to a spawned worker,
which holds a ``LocalHandle`` and executes them there; one generic loop serves every verb. A
backend that segfaults, aborts, hangs or raises then costs only its own rows: the parent sees
the dead worker (signal name from its exit code) or the timeout, kills it, and raises
``BackendError``, which the runner records.

Timed rounds run inside the worker with the worker's clock; only the seconds per call cross
the pipe, so the pipe's round trip is outside every measurement.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from enum import Enum
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection, wait
from typing import Any

import numpy as np
import torch

from backends.base import Backend, Target
from harness.core.errors import BackendError, BackendUnavailableError, InputError
from harness.core.model import LSTMPredictor, ModelConfig
from harness.core.settings import ProcessSettings, apply, freeze_prepared
from harness.engine.handles import Handle, LocalHandle, OpenInfo, Request, describe

_CONTEXT = multiprocessing.get_context("spawn")  # fork would copy torch's threads and CUDA state
_CLOSE_GRACE_S = 5.0
# Spawning and importing torch is the harness's own cost, not the backend's: it has its own,
# generous limit, so a short --backend-timeout on a loaded machine does not fail the start.
_START_TIMEOUT_S = 300.0


class FailureKind(Enum):
    INPUT = "input"  # the workload refused its inputs: InputError
    UNAVAILABLE = "unavailable"  # the backend cannot serve this: BackendUnavailableError
    ERROR = "error"  # anything else the backend raised: BackendError


_RAISE: dict[FailureKind, type[Exception]] = {
    FailureKind.INPUT: InputError, FailureKind.UNAVAILABLE: BackendUnavailableError,
    FailureKind.ERROR: BackendError}


@dataclass(frozen=True)
class Reply:
    """The worker's answer: a value, or what failed and how."""

    value: Any = None
    failure: FailureKind | None = None
    message: str = ""

    @classmethod
    def of(cls, work: Callable[[], Any]) -> Reply:
        try:
            return cls(work())
        except InputError as exc:
            return cls(failure=FailureKind.INPUT, message=str(exc))
        except BackendUnavailableError as exc:
            return cls(failure=FailureKind.UNAVAILABLE, message=str(exc))
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which records it
            return cls(failure=FailureKind.ERROR, message=describe(exc))

    def unwrap(self, what: str) -> Any:
        if self.failure is None:
            return self.value
        if self.failure is FailureKind.ERROR:
            raise BackendError(f"{self.message} (in {what})")
        raise _RAISE[self.failure](self.message)


@dataclass(frozen=True)
class _Close:
    """Ends the worker's loop."""


def _serve(conn: Connection, backend_cls: type[Backend], model_config: ModelConfig,
           target: Target, settings: ProcessSettings, with_step: bool) -> None:
    """Worker main: read the model's arrays, prepare, report, then execute requests until
    told to close or the parent goes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if hasattr(signal, "pthread_sigmask"):  # ignored now: one that came while starting is dropped
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:
        weights, first_batch = conn.recv()
    except (EOFError, OSError):  # the parent is gone, or stopped this worker unread
        return
    # First, before anything in this process starts CUDA or the backend's libraries.
    os.environ.update(backend_cls().environment(target))
    apply(settings)
    conn.send(Reply("started"))

    def open_local() -> LocalHandle:
        model = LSTMPredictor(model_config)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
        return LocalHandle.open(backend_cls(), model.eval(), target, first_batch, with_step=with_step)

    opened = Reply.of(open_local)
    if opened.failure is None:
        freeze_prepared(settings)
    conn.send(Reply(opened.value.info) if opened.failure is None else opened)
    if opened.failure is not None:
        return
    handle = opened.value
    try:
        while not isinstance(request := conn.recv(), _Close):
            conn.send(Reply.of(lambda r=request: handle.call(r)))
        handle.close()
        conn.send(Reply())
    except (EOFError, OSError):  # the parent is gone: nobody to answer
        return


@contextmanager
def _ctrl_c_held() -> Iterator[None]:
    """Hold SIGINT back from this thread, and so from any process it spawns meanwhile, which
    inherits the mask. A terminal's Ctrl-C reaches the whole process group: a worker still
    importing torch would die of it with a traceback before ``_serve`` could ignore it.
    multiprocessing starts its resource tracker the same way, and unblocks SIGINT when it
    has, so the tracker is started first. The parent's own Ctrl-C still interrupts it: at
    once when another of its threads takes the signal, else as the mask is restored."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    resource_tracker.ensure_running()
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _send_quietly(conn: Connection, payload: Any) -> None:
    """Send ``payload``; a worker that died or was stopped first is the reader's to report."""
    try:
        conn.send(payload)
    except Exception:  # noqa: BLE001 - closed or broken under it; the reader reports why
        pass


def death_reason(exitcode: int | None) -> str:
    """``SIGSEGV``, ``SIGABRT``, ... for a worker killed by a signal, else its exit status."""
    if exitcode is not None and exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit status {exitcode}"


class WorkerHandle(Handle):
    """A ``Handle`` whose backend lives in a spawned worker process."""

    def __init__(self, name: str, process: Any, conn: Connection, timeout_s: float) -> None:
        self.name = name
        self._process = process
        self._conn = conn
        self._timeout_s = timeout_s
        self._failure: str | None = None
        self._started_at = time.perf_counter()  # start-up is measured from here
        self._sending: threading.Thread | None = None  # the model's arrays, on their way

    @classmethod
    def open(cls, backend: Backend, model: LSTMPredictor, target: Target, first_batch: np.ndarray,
             settings: ProcessSettings, timeout_s: float, with_step: bool = False) -> WorkerHandle:
        """Spawn the worker, which prepares the backend and makes the first call.

        The model travels as plain arrays and its config, never as a pickled module.
        """
        return cls.start(backend, model, target, first_batch, settings, timeout_s, with_step).ready()

    @classmethod
    def start(cls, backend: Backend, model: LSTMPredictor, target: Target, first_batch: np.ndarray,
              settings: ProcessSettings, timeout_s: float, with_step: bool = False) -> WorkerHandle:
        """Spawn the worker and return at once; ``ready`` waits for its preparation. Workers
        whose start-up and preparation are not measured can so start side by side."""
        weights = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
        parent_conn, child_conn = _CONTEXT.Pipe()
        process = _CONTEXT.Process(
            target=_serve, name=f"harness-{backend.name}",
            args=(child_conn, type(backend), model.config, target, settings, with_step))
        handle = cls(backend.name, process, parent_conn, timeout_s)
        try:
            with _ctrl_c_held():
                process.start()
        except BaseException:  # Ctrl-C as the mask lifts: no caller will ever hold this worker
            if process.pid is not None:
                handle._stop()
            raise
        finally:
            child_conn.close()
        # The arrays follow on a thread of their own: a write larger than the pipe's buffer
        # waits until the worker reads it, after its imports, which would hold the caller.
        handle._sending = threading.Thread(
            target=_send_quietly, args=(parent_conn, (weights, first_batch)),
            name=f"harness-{backend.name}-weights", daemon=True)
        handle._sending.start()
        return handle

    def ready(self) -> WorkerHandle:
        """Wait until the worker has prepared its backend and made the first call; a worker
        that fails on the way is closed."""
        try:
            self._receive("start-up", _START_TIMEOUT_S)
            startup_s = time.perf_counter() - self._started_at
            self._sent()  # it reports its start once it has read its model
            info: OpenInfo = self._receive("prepare")
        except BaseException:  # a failed start, or Ctrl-C while preparing: no orphan left
            self.close()
            raise
        self.info = replace(info, pid=self._process.pid, startup_s=startup_s)
        return self

    def call(self, request: Request) -> Any:
        """One request in the worker; ``BackendError`` if it raised, died or timed out."""
        what = request.what
        if self._failure:
            raise BackendError(self._failure)
        try:
            self._conn.send(request)
        except OSError:
            self._fail(f"{death_reason(self._wait_exit())}: the worker died before {what}")
        return self._receive(what, max(self._timeout_s, request.timeout_s or 0.0))

    def _receive(self, what: str, timeout_s: float | None = None) -> Any:
        timeout_s = timeout_s or self._timeout_s
        ready = wait([self._conn, self._process.sentinel], timeout_s)
        if self._conn in ready:
            try:
                reply: Reply = self._conn.recv()
            except (EOFError, OSError):
                pass  # the worker died while answering; the exit code says how
            else:
                return reply.unwrap(what)
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

    def _sent(self) -> None:
        """Wait for the thread sending the model, which a read or a dead reader ends."""
        if self._sending is not None:
            self._sending.join(_CLOSE_GRACE_S)
            self._sending = None

    def _stop(self) -> None:
        if self._process.is_alive():
            self._process.kill()
        self._process.join()
        self._sent()  # before the pipe closes under it
        self._conn.close()

    def stop(self) -> None:
        """Kill the worker at once: one that has not reported itself prepared has nothing
        to finish, and asking it to close would wait for its imports."""
        if not self._conn.closed:
            self._failure = self._failure or "the worker was stopped"
            self._stop()

    def close(self) -> None:
        """Ask the worker to finish; kill it if it does not within a few seconds."""
        if self._conn.closed:
            return
        self._failure = self._failure or "the worker was closed"
        if self._sending is not None and self._sending.is_alive():
            # It has not read its model yet, so has nothing to finish; a request written now
            # could interleave with the arrays still being written.
            self._stop()
            return
        try:
            self._conn.send(_Close())
            if self._conn.poll(_CLOSE_GRACE_S):
                self._conn.recv()
        except (OSError, EOFError):
            pass  # already dead: nothing to ask
        self._stop()
