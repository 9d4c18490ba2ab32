"""Process-wide settings, applied in exactly one place and recorded in every result.

Thread pools and dynamo flags are global to the process, so they are set once at start-up
(``apply``) and never touched elsewhere.
"""

from __future__ import annotations

import gc
import os
import sys
from dataclasses import asdict, dataclass


def physical_cores() -> int:
    """Physical cores, from /proc/cpuinfo where available (SMT siblings excluded)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return os.cpu_count() or 1
    cores: set[tuple[str, str]] = set()
    physical = core = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "physical id":
            physical = value
        elif key == "core id":
            core = value
            cores.add((physical, core))
    return len(cores) or os.cpu_count() or 1


AOTI_CHECK = "AOTI_RUNTIME_CHECK_INPUTS"  # read by AOTInductor's runtime on every call


@dataclass(frozen=True)
class ProcessSettings:
    """Everything process-wide that can change a timing or a numerical result."""

    intra_op_threads: int
    inter_op_threads: int = 1
    # Dynamo treats nn.LSTM as a graph break unless this is set, and a plain torch.compile
    # then silently runs eager.
    dynamo_allow_rnn: bool = True
    # Past its recompile limit dynamo silently runs the frame eagerly, which would time eager
    # under the name "compile". Where seq_len cannot stay dynamic every length recompiles, so
    # the limit is raised, and hitting it fails the row instead.
    dynamo_recompile_limit: int = 32
    dynamo_fail_on_recompile_limit: bool = True
    # ORT's worker threads spin after each call; when backends are interleaved that spinning
    # steals the cores from whichever backend runs next, so it is off by default.
    ort_allow_spinning: bool = False
    # TF32 rounds fp32 matmul inputs to 10 mantissa bits on Ampere and later GPUs, errors of
    # about 1e-3: an fp32 row must mean fp32, so it is off unless asked for.
    cuda_allow_tf32: bool = False
    # NumPy's OpenBLAS (used only by the float64 reference) gains nothing from threads on
    # 64-wide matrices, and its spinning threads fight torch's for the cores, making the
    # reference's time erratic (docs/notes/settings-evidence.md).
    numpy_blas_threads: int = 1
    # An AOTInductor package is built for one seq_len; called with another it answers with
    # wrong numbers and no error unless this check is on, when it raises instead.
    aoti_runtime_check_inputs: bool = True
    # A full garbage collection walks every object of the process, with torch loaded a
    # stall of a sizeable fraction of a second that lands in whichever timed round or served
    # query triggered it (docs/notes/settings-evidence.md). A worker freezes what exists
    # once its backend is prepared (modules, model, runtime), which later collections skip.
    gc_freeze_after_prepare: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


def default_settings(threads: int | None = None) -> ProcessSettings:
    return ProcessSettings(intra_op_threads=threads or physical_cores())


_applied: ProcessSettings | None = None  # what ``apply`` set in this process


def apply(settings: ProcessSettings) -> ProcessSettings:
    """Apply the settings to torch. Idempotent; call once per process, before any model runs."""
    global _applied
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(settings.intra_op_threads)
    if torch.get_num_interop_threads() != settings.inter_op_threads:
        try:
            torch.set_num_interop_threads(settings.inter_op_threads)
        except RuntimeError:
            # Already fixed by earlier parallel work in this process; record what is in force.
            pass
    torch.backends.cuda.matmul.allow_tf32 = settings.cuda_allow_tf32
    torch.backends.cudnn.allow_tf32 = settings.cuda_allow_tf32
    threadpool_limits(limits=settings.numpy_blas_threads, user_api="blas")
    os.environ[AOTI_CHECK] = "1" if settings.aoti_runtime_check_inputs else "0"
    _applied = settings
    if "torch._dynamo" in sys.modules:
        configure_dynamo()
    return settings


def configure_dynamo() -> None:
    """Set dynamo's flags from the applied settings. Importing dynamo takes seconds, which a
    worker whose backend never traces should not pay, so the flags are set when both have
    happened, whichever came second: ``apply`` calls this where dynamo is already loaded,
    and a backend that traces or exports calls it when it loads dynamo
    (``backends.compiled.loaded_dynamo``)."""
    if _applied is None:
        return
    import torch._dynamo

    torch._dynamo.config.allow_rnn = _applied.dynamo_allow_rnn
    torch._dynamo.config.recompile_limit = _applied.dynamo_recompile_limit
    torch._dynamo.config.fail_on_recompile_limit_hit = _applied.dynamo_fail_on_recompile_limit


def freeze_prepared(settings: ProcessSettings) -> None:
    """Once a backend is prepared: collect, then move every object left into the
    collector's permanent generation (``gc.freeze``), where the settings ask for it."""
    if settings.gc_freeze_after_prepare:
        gc.collect()
        gc.freeze()


def effective_threads() -> dict:
    """The thread counts actually in force, read back from the libraries."""
    import torch
    from threadpoolctl import threadpool_info

    blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    return {
        "torch_intra_op": torch.get_num_threads(),
        "torch_inter_op": torch.get_num_interop_threads(),
        "numpy_blas": max(blas) if blas else None,
    }
