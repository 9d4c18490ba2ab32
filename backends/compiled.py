"""torch.compile with inductor, proven to really capture the LSTM.

Dynamo treats ``nn.LSTM`` as a graph break unless ``torch._dynamo.config.allow_rnn`` is set
(``harness.core.settings`` sets it), in which case a plain ``torch.compile`` silently runs eager.
This backend counts the graphs inductor compiles and the graph breaks dynamo records, and
refuses to call itself compiled when nothing was captured.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from backends.base import (
    Backend,
    Session,
    Target,
    TorchSession,
    TorchStepSession,
    copy_model,
    torch_reason,
)
from harness.core.errors import BackendError, BackendUnavailableError
from harness.core.model import LSTMPredictor, LSTMStep
from harness.core.settings import configure_dynamo

# torch 2.13 can keep each torch.compile's dynamo cache entries apart; older torch cannot.
ISOLATE_RECOMPILES = "isolate_recompiles" in inspect.signature(torch.compile).parameters


def isolated_compile(module: torch.nn.Module, **options: Any) -> Callable[..., Any]:
    """``torch.compile(module, **options)`` with a dynamo cache of its own.

    Dynamo keeps its compiled entries on the code object of ``forward``, which every compile
    of the same model shares, and each compile here brings a backend of its own, so none
    reuses another's entries: past the recompile limit dynamo fails (or silently runs eager).
    A process that compiles the model again and again (a pytest session, a sweep over models,
    --no-isolate) would reach it. torch 2.13 keeps each compile's entries apart; on older
    torch (2.11 on the GPU machine) ``module``, which must be a copy of its own, gets a
    ``forward`` with a code object of its own."""
    if ISOLATE_RECOMPILES:
        return torch.compile(module, isolate_recompiles=True, **options)
    forward = type(module).forward
    module.forward = types.MethodType(
        types.FunctionType(forward.__code__.replace(), forward.__globals__, forward.__name__,
                           forward.__defaults__, forward.__closure__), module)
    return torch.compile(module, **options)


def _onednn_bf16() -> bool:
    """Whether oneDNN can run bf16 on this CPU (torch asks the CPU's ISA)."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return True if check is None else bool(check())


def inductor_reason(target: Target) -> str | None:
    """Why inductor (torch.compile, AOTInductor) cannot serve ``target``; None if it can."""
    if target.device == "cpu" and target.dtype == "bf16" and not _onednn_bf16():
        return ("inductor lowers a bf16 LSTM on the CPU to oneDNN, which has no bf16 LSTM "
                "on this processor (it needs AVX-512 BF16); eager bf16 does without oneDNN")
    return torch_reason(target)


def loaded_dynamo() -> types.ModuleType:
    """torch._dynamo, with the process's flags set on it. Imported where a model is traced,
    not with this module, which every registry loads: dynamo takes seconds to import."""
    import torch._dynamo

    configure_dynamo()
    return torch._dynamo


def _graph_breaks() -> int:
    return int(sum(loaded_dynamo().utils.counters["graph_break"].values()))


@dataclass
class Counts:
    """What inductor did for one compiled model: graphs compiled, and calls into them."""

    graphs: int = 0
    graph_calls: int = 0


class CompiledSession(TorchSession):
    def __init__(self, fn, target: Target, counts: Counts, breaks_before: int,
                 cudagraphs: bool = False) -> None:
        super().__init__(fn, target)
        self._counts = counts
        self._breaks_before = breaks_before
        self._cudagraphs = cudagraphs

    def run(self, x: torch.Tensor) -> torch.Tensor:
        if self._cudagraphs:
            # Each call is a new inference step: without this, CUDA-graph trees would keep
            # the previous call's output buffers alive and refuse to replay over them.
            torch.compiler.cudagraph_mark_step_begin()
        return super().run(x)

    def diagnostics(self) -> dict:
        graphs = self._counts.graphs
        return {"graphs": graphs, "graph_breaks": _graph_breaks() - self._breaks_before,
                "recompiles": max(0, graphs - 1), "graph_calls": self._counts.graph_calls}


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

    dynamo = loaded_dynamo()
    counts = Counts()

    def counting_inductor(gm: torch.fx.GraphModule, example_inputs):
        counts.graphs += 1
        # The same switch torch.compile(mode="reduce-overhead") flips, kept explicit here
        # because a counting backend cannot take a mode.
        patches = {"triton.cudagraphs": True} if cudagraphs else None
        compiled = compile_fx(gm, example_inputs, config_patches=patches)

        def counted(*args: Any) -> Any:
            counts.graph_calls += 1
            return compiled(*args)
        return counted

    breaks_before = _graph_breaks()
    # fullgraph: a graph break raises rather than leaving part of the model eager. It also
    # keeps one failure from spoiling the process: without it, dynamo marks code it failed
    # to trace as skipped, and every later compile of the same module ran eager, capturing
    # nothing (seen on CUDA after a failed streaming step).
    fn = reporting_dynamo_failures(
        isolated_compile(module, backend=counting_inductor, dynamic=None, fullgraph=True))
    session = session_cls(fn, target, counts, breaks_before, cudagraphs)
    native = [TorchSession.to_native(session, x) for x in example]
    for arg, axis in dynamic:
        dynamo.maybe_mark_dynamic(native[arg], axis)
    if cudagraphs:
        torch.compiler.cudagraph_mark_step_begin()
    with torch.inference_mode():
        fn(*native)
    session.synchronize()
    if counts.graphs == 0:
        raise BackendError("torch.compile captured no graph, so it would silently run eager; "
                           "dynamo skips code that an earlier compile in this process failed "
                           "to trace without fullgraph")
    return session


def reporting_dynamo_failures(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with dynamo's refusals turned into one-line BackendErrors. Under fullgraph an
    exception the model itself raises while being traced arrives as ``Unsupported: Observed
    exception``, with the model's message only in the debug context (the cause holds it on
    torch 2.13, not on 2.11); that message is what a failed row should show."""
    exc = loaded_dynamo().exc

    def call(*args: Any) -> Any:
        try:
            return fn(*args)
        except exc.Unsupported as error:
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            context = next((line.partition(":")[2].strip() for line in lines
                            if line.startswith("Developer debug context:")), "")
            if isinstance(error.__cause__, exc.ObservedException):
                raise BackendError(f"the model raised while torch.compile traced it: "
                                   f"{context or lines[0]}") from error
            detail = f"{lines[0]} ({context})" if context else lines[0]
            raise BackendError(f"torch.compile could not capture the model in one graph, so "
                               f"it would silently run eager: {detail}") from error
    return call


class CompileBackend(Backend):
    name = "compile"
    summary = "torch.compile (inductor) with the LSTM captured, graph breaks and recompiles counted"
    in_default_set = True
    cudagraphs = False

    def unavailable_reason(self, target: Target) -> str | None:
        return inductor_reason(target)

    def prepare(self, model: LSTMPredictor, target: Target) -> Session:
        example = np.zeros((2, 8, model.config.input_size), np.float32)
        return compile_session(CompiledSession, copy_model(model, target), target, (example,),
                               dynamic=((0, 0), (0, 1)), cudagraphs=self.cudagraphs)

    def prepare_step(self, model: LSTMPredictor, target: Target) -> Session:
        cfg = model.config
        state = np.zeros((cfg.num_layers, 2, cfg.hidden_size), np.float32)
        example = (np.zeros((2, cfg.input_size), np.float32), state, state)
        return compile_session(CompiledStepSession, StateShapedStep(copy_model(model, target)),
                               target, example, dynamic=((0, 0), (1, 1), (2, 1)))


class StateShapedStep(LSTMStep):
    """The step model, returning the state in the shape it was given.

    torch 2.11's LSTM decomposition, which inductor uses on CUDA and for fp16 on CPU, squeezes
    axis 1 of the final state where torch 2.13's squeezes axis 0: for any batch but 1 the
    state came back as (layers, 1, batch, hidden), right in value but wrong in shape, and the
    next step failed. The GPU machine this harness was proven on carries torch 2.11. Where
    the shape is already right the reshape is a view and costs nothing."""

    def forward(self, x_t: torch.Tensor, h: torch.Tensor, c: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y_t, h_next, c_next = super().forward(x_t, h, c)
        return y_t, h_next.reshape(h.shape), c_next.reshape(c.shape)


class CudaGraphsCompileBackend(CompileBackend):
    """torch.compile with CUDA graphs (mode="reduce-overhead"): shows what launch overhead costs."""

    name = "compile-cudagraphs"
    summary = "torch.compile (inductor) with CUDA graphs, i.e. mode=\"reduce-overhead\"; CUDA only"
    devices = ("cuda",)
    cudagraphs = True

    def unavailable_reason(self, target: Target) -> str | None:
        if target.device != "cuda":
            return "CUDA graphs need --device cuda"
        return super().unavailable_reason(target)

    def prepare_step(self, model: LSTMPredictor, target: Target) -> Session:
        raise BackendUnavailableError("no streaming step model: the step model is not built with "
                                      "CUDA graphs")
