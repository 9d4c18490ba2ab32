import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_kernel_choosing_variables_are_recorded_as_set_and_only_those():
    from harness.core.environment import kernel_env

    environ = {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "1048576", "HOME": "/root"}
    assert kernel_env(environ) == {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "1048576"}
    assert kernel_env({}) == {}


ORDERS = {
    "applied first, dynamo loaded after":
        "apply(default_settings(1)); from backends.compiled import loaded_dynamo; loaded_dynamo()",
    "dynamo loaded first, applied after": "import torch._dynamo; apply(default_settings(1))",
}


@pytest.mark.parametrize("order", ORDERS)
def test_dynamo_flags_are_set_whichever_comes_first_dynamo_or_the_settings(order):
    """A worker imports dynamo only when its backend traces, so dynamo may be loaded before
    or after the settings are applied; either way its flags must be the settings' (torch's
    own default leaves nn.LSTM a graph break)."""
    code = ("from harness.core.settings import apply, default_settings; "
            f"{ORDERS[order]}; import torch._dynamo.config as c; "
            "print(c.allow_rnn, c.recompile_limit, c.fail_on_recompile_limit_hit)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "32", "True"]


def test_the_parent_and_a_worker_that_never_traces_do_not_load_dynamo():
    """What makes a worker start, and a run begin, seconds sooner: the engine imports no
    backend module until asked, a loaded registry's backends import their runtimes only
    when used, and the settings leave dynamo alone."""
    code = ("import sys; from harness.engine.isolation import WorkerHandle; "
            "from harness.core.settings import apply, default_settings; import backends.eager; "
            "from backends.registry import load_registry; load_registry(); "
            "apply(default_settings(1)); "
            "print(sorted(m for m in ('torch._dynamo', 'onnx', 'onnxruntime', 'openvino') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
