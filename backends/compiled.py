"""torch.compile with inductor, proven to really capture the LSTM.

Dynamo treats ``nn.LSTM`` as a graph break unless ``torch._dynamo.config.allow_rnn`` is set
(``harness.settings`` sets it), in which case a plain ``torch.compile`` silently runs eager.
This backend counts the graphs inductor compiles and the graph breaks dynamo records, and
refuses to call itself compiled when nothing was captured.
"""

from __future__ import annotations

import numpy as np
import torch
import torch._dynamo
from torch._dynamo.utils import counters

from backends.base import (
    Backend,
    Session,
    Target,
    TorchSession,
    TorchStepSession,
    copy_model,
    torch_reason,
)
from harness.errors import BackendError, BackendUnavailableError
from harness.model import LSTMPredictor, LSTMStep


def _graph_breaks() -> int:
    return int(sum(counters["graph_break"].values()))


class CompiledSession(TorchSession):
    def __init__(self, fn, target: Target, graphs: list[int], breaks_before: int,
                 cudagraphs: bool = False) -> None:
        super().__init__(fn, target)
        self._graphs = graphs
        self._breaks_before = breaks_before
        self._cudagraphs = cudagraphs

    def run(self, x: torch.Tensor) -> torch.Tensor:
        if self._cudagraphs:
            # Each call is a new inference step: without this, CUDA-graph trees would keep
            # the previous call's output buffers alive and refuse to replay over them.
            torch.compiler.cudagraph_mark_step_begin()
        return super().run(x)

    def diagnostics(self) -> dict:
        graphs = self._graphs[0]
        return {"graphs": graphs, "graph_breaks": _graph_breaks() - self._breaks_before,
                "recompiles": max(0, graphs - 1)}


class CompiledStepSession(TorchStepSession, CompiledSession):
    """The streaming step model under torch.compile, graphs counted the same way."""


def compile_session(session_cls: type[CompiledSession], module: torch.nn.Module, target: Target,
                    example: tuple[np.ndarray, ...], dynamic: tuple[tuple[int, int], ...],
                    cudagraphs: bool = False) -> CompiledSession:
    """Compile ``module`` now on ``example`` (so preparation time holds the compile), with the
    (argument, axis) pairs in ``dynamic`` marked dynamic so later shapes reuse the graph, and
    refuse a compile that captured nothing.

    The marks are hints (``maybe_mark_dynamic``): where dynamo specialises an axis anyway, a
    new size recompiles, and the ``recompiles`` count shows it. A hard ``mark_dynamic`` fails
    with ConstraintViolationError instead; seen for seq_len with torch 2.13 on an fp16 LSTM on
    CPU, and with torch 2.11 on CUDA in every dtype."""
    from torch._inductor.compile_fx import compile_fx

    graphs = [0]

    def counting_inductor(gm: torch.fx.GraphModule, example_inputs):
        graphs[0] += 1
        # The same switch torch.compile(mode="reduce-overhead") flips, kept explicit here
        # because a counting backend cannot take a mode.
        patches = {"triton.cudagraphs": True} if cudagraphs else None
        return compile_fx(gm, example_inputs, config_patches=patches)

    breaks_before = _graph_breaks()
    fn = torch.compile(module, backend=counting_inductor, dynamic=None)
    session = session_cls(fn, target, graphs, breaks_before, cudagraphs)
    native = [TorchSession.to_native(session, x) for x in example]
    for arg, axis in dynamic:
        torch._dynamo.maybe_mark_dynamic(native[arg], axis)
    if cudagraphs:
        torch.compiler.cudagraph_mark_step_begin()
    with torch.inference_mode():
        fn(*native)
    session.synchronize()
    diag = session.diagnostics()
    if diag["graphs"] == 0 or diag["graph_breaks"] > 0:
        raise BackendError(
            f"torch.compile did not capture the model ({diag['graphs']} graph(s), "
            f"{diag['graph_breaks']} graph break(s)): it would silently run eager; "
            f"is torch._dynamo.config.allow_rnn set?")
    return session


class CompileBackend(Backend):
    name = "compile"
    summary = "torch.compile (inductor) with the LSTM captured, graph breaks and recompiles counted"
    cudagraphs = False

    def unavailable_reason(self, target: Target) -> str | None:
        return torch_reason(target)

    def prepare(self, model: LSTMPredictor, target: Target) -> Session:
        example = np.zeros((2, 8, model.config.input_size), np.float32)
        return compile_session(CompiledSession, copy_model(model, target), target, (example,),
                               dynamic=((0, 0), (0, 1)), cudagraphs=self.cudagraphs)

    def prepare_step(self, model: LSTMPredictor, target: Target) -> Session:
        cfg = model.config
        state = np.zeros((cfg.num_layers, 2, cfg.hidden_size), np.float32)
        example = (np.zeros((2, cfg.input_size), np.float32), state, state)
        session = compile_session(CompiledStepSession, LSTMStep(copy_model(model, target)), target,
                                  example, dynamic=((0, 0), (1, 1), (2, 1)))
        check_state_round_trip(session, cfg.num_layers, cfg.input_size, cfg.hidden_size)
        return session


def check_state_round_trip(session: Session, num_layers: int, input_size: int, hidden_size: int,
                           batch: int = 3) -> None:
    """Feed the returned state back twice, at a batch other than the example's, and refuse a
    state whose shape changed. Seen with torch 2.11 on CUDA: the compiled step returned a 4-D
    state, and the next call failed deep inside nn.LSTM. A recompile this causes is counted in
    ``recompiles`` and its time in preparation, where it belongs: the first real batch would
    pay it otherwise."""
    state = np.zeros((num_layers, batch, hidden_size), np.float32)
    x_t, h, c = session.to_native((np.zeros((batch, input_size), np.float32), state, state))
    for _ in range(2):
        _, h, c = session.run((x_t, h, c))
        if tuple(h.shape) != state.shape or tuple(c.shape) != state.shape:
            raise BackendError(f"torch.compile's step model returned a state of shape "
                               f"{tuple(h.shape)} and {tuple(c.shape)} for {state.shape}: "
                               "streaming with compile is broken in this torch")


class CudaGraphsCompileBackend(CompileBackend):
    """torch.compile with CUDA graphs (mode="reduce-overhead"): shows what launch overhead costs."""

    name = "compile-cudagraphs"
    summary = "torch.compile (inductor) with CUDA graphs, i.e. mode=\"reduce-overhead\"; CUDA only"
    cudagraphs = True

    def unavailable_reason(self, target: Target) -> str | None:
        if target.device != "cuda":
            return "CUDA graphs need --device cuda"
        return super().unavailable_reason(target)

    def prepare_step(self, model: LSTMPredictor, target: Target) -> Session:
        raise BackendUnavailableError("no streaming step model: the step model is not built with "
                                      "CUDA graphs")
