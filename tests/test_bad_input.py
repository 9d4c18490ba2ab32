"""Bad input through the CLI: one line naming what was expected and what arrived, exit 2.

The messages are run in a subprocess where the whole of stderr matters (no progress bar,
no traceback); the cheap ones in-process.
"""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from backends.torchscript import TorchScriptBackend
from harness.cli.main import main
from harness.core.checkpoint import paths_for, sha256_file
from harness.core.errors import BackendError, InputError
from harness.core.memory import check_fits
from harness.core.training import TrainConfig
from tests.conftest import FAST

ROOT = Path(__file__).resolve().parent.parent


def _cli(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})}, check=False, timeout=600)


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize("argv, fragment", [
    (["run", "--dtype", "fp23"],
     "unknown dtype 'fp23'; expected one of fp32, bf16, fp16, int8 (did you mean fp32"),
    (["run", "--batch-sizes", "1.5"], "--batch-sizes expects comma-separated integers >= 1, got '1.5'"),
    (["run", "--seq-len", "0"], "--seq-len expects integers >= 1, got 0"),
    # one value each: a list would have run its first value alone, silently
    (["run", "--threads", "1,2"], "--threads expects an integer >= 1, got '1,2'"),
    (["run", "--processes", "2,3"], "--processes expects an integer >= 1, got '2,3'"),
    (["run", "--horizon", "10,20"], "--horizon expects an integer >= 1, got '10,20'"),
    (["run", "--backend-timeout", "0"], "--backend-timeout expects a number > 0, got 0"),
    (["run", "--backend-timeout", "soon"], "--backend-timeout expects a number, got 'soon'"),
    # not finite: a budget or a timeout that never ends
    (["run", "--backend-timeout", "inf"], "--backend-timeout expects a number > 0, got inf"),
    (["run", "--budget", "nan"], "--budget expects a number > 0, got nan"),
    (["run", "--max-canary-spread", "0.9"], "--max-canary-spread expects a number >= 1, got 0.9"),
    # an infinite band would call every backend agreeing
    (["run", "--atol", "inf"], "--atol expects a number >= 0, got inf"),
    (["run", "--rtol", "-1"], "--rtol expects a number >= 0, got -1"),
    (["run", "--seed", "-1"], "--seed expects an integer >= 0, got -1"),
    (["run", "--backends", ","], "--backends expects one or more comma-separated names, got ','"),
    (["run", "--dtype", " , "], "--dtype expects one or more comma-separated names, got ' , '"),
    (["history", "--limit", "0"], "--limit expects an integer >= 1, got 0"),
    (["run", "--batch-sizes", "100000000", "--seq-len", "1000"],
     "expected batch × seq_len small enough to fit in memory, got batch 100000000 × seq_len 1000"),
])
def test_bad_values_exit_2_with_one_line(argv, fragment, capsys):
    assert main(argv) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert fragment in err and "Traceback" not in err


def test_a_cache_dir_that_is_a_file_exits_2_before_any_training(tmp_path, capsys):
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("a file")
    for command in (["train", "--epochs", "1", "--hidden-size", "8"],
                    ["run", "--epochs", "1", "--hidden-size", "8", "--no-history"]):
        assert main([*command, "--cache-dir", str(not_a_folder)]) == 2
        captured = capsys.readouterr()
        assert "directory path for --cache-dir" in captured.err
        assert "epoch" not in captured.err + captured.out


def test_memory_estimate_refuses_only_what_cannot_fit():
    gib = 2**30
    check_fits([(1024, 200)], 1, 64, 5, 4, available=gib)  # ~0.05 GiB: fine
    with pytest.raises(InputError, match="got batch 100000 × seq_len 1000, which needs about"):
        check_fits([(100_000, 1000)], 1, 64, 5, 4, available=gib)


@pytest.fixture()
def private_cache(checkpoint, tmp_path):
    """A copy of the trained checkpoint in a cache of this test's own, to break at will."""
    weights, meta = paths_for(tmp_path, TrainConfig())
    weights.parent.mkdir(parents=True)
    weights.write_bytes(checkpoint.weights_path.read_bytes())
    meta.write_text(json.dumps(checkpoint.metadata))
    return tmp_path, weights, meta, checkpoint.metadata


@pytest.mark.slow
def test_a_truncated_checkpoint_exits_2_with_one_line(private_cache):
    cache, weights, _, _ = private_cache
    weights.write_bytes(weights.read_bytes()[:200])
    done = _cli(["run", "--backends", "eager", *FAST], {"LSTM_HARNESS_CACHE": str(cache)})
    assert done.returncode == 2
    assert "refusing a modified or truncated file" in _one_line(done.stderr)


@pytest.mark.slow
def test_a_checkpoint_for_another_model_exits_2_with_one_line(private_cache):
    cache, _, meta, metadata = private_cache
    meta.write_text(json.dumps({**metadata, "model": {**metadata["model"], "hidden_size": 32}}))
    done = _cli(["run", "--backends", "eager", *FAST], {"LSTM_HARNESS_CACHE": str(cache)})
    assert done.returncode == 2
    line = _one_line(done.stderr)
    assert "'hidden_size': 32" in line and "expected" in line


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@pytest.mark.slow
def test_a_malicious_pickle_checkpoint_is_refused_through_the_cli(private_cache):
    cache, weights, meta, metadata = private_cache
    weights.write_bytes(pickle.dumps({"lstm.weight_ih_l0": _Payload()}))
    meta.write_text(json.dumps({**metadata, "weights_sha256": sha256_file(weights)}))
    done = subprocess.run([sys.executable, "-m", "harness", "run", "--backends", "eager", *FAST],
                          capture_output=True, text=True, cwd=cache, check=False, timeout=600,
                          env={**os.environ, "LSTM_HARNESS_CACHE": str(cache),
                               "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2
    assert "not a valid safetensors file" in _one_line(done.stderr)
    assert not (cache / "PWNED").exists()


def test_a_modified_artifact_is_refused_before_loading(checkpoint, cpu_target, monkeypatch):
    """Between export and load the TorchScript file changes: the backend refuses it."""
    import backends.torchscript as ts

    real_record = ts.Artifact.record

    def record_then_tamper(path):
        artifact = real_record(path)
        with open(path, "ab") as f:
            f.write(b"\0")
        return artifact

    monkeypatch.setattr(ts.Artifact, "record", staticmethod(record_then_tamper))
    with pytest.raises(BackendError, match="refusing to load it"):
        TorchScriptBackend().prepare(checkpoint.model, cpu_target)


@pytest.mark.slow
@pytest.mark.parametrize("missing", ["onnx", "onnxruntime"])
def test_a_missing_onnx_package_makes_its_rows_unavailable_and_the_rest_run(checkpoint, cache_dir,
                                                                             tmp_path, missing):
    # None in sys.modules is how Python spells "not installed": import raises
    # ModuleNotFoundError and importlib.util.find_spec returns None, in every process
    # (workers included) that runs this sitecustomize.
    (tmp_path / "sitecustomize.py").write_text(f"import sys\nsys.modules[{missing!r}] = None\n")
    out = tmp_path / "results.json"
    done = _cli(["run", "--backends", "eager,onnxruntime", "--out", str(out), *FAST],
                {"LSTM_HARNESS_CACHE": str(cache_dir), "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"})
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    rows = {r["backend"]: r for r in data["rows"]}
    assert rows["onnxruntime"]["status"] == "unavailable"
    assert rows["onnxruntime"]["reason"] == \
        f"{missing} is not installed: pip install -e '.[cpu]' (or '.[gpu]' for CUDA)"
    assert rows["eager"]["status"] == "ok" and rows["eager"]["median_ms"] > 0
    assert data["environment"]["versions"][missing] is None


@pytest.mark.parametrize("name", ["../elsewhere.safetensors", "a/b.safetensors", ".."])
def test_a_checkpoint_record_naming_a_file_elsewhere_exits_2_with_one_line(tmp_path, name, capsys):
    meta = tmp_path / "model.json"
    meta.write_text(json.dumps({"format_version": 1, "weights_sha256": "0" * 64,
                                "weights_file": name}))
    assert main(["run", "--checkpoint", str(meta), *FAST]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"expected the name of a weights file beside it in weights_file, got {name!r}" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("attribute, base", [("BACKENDS", "backends.base.Backend"),
                                             ("WORKLOADS", "harness.workloads.base.Workload")])
def test_a_plugin_listing_something_else_exits_2_naming_the_class_expected(attribute, base,
                                                                          monkeypatch, capsys):
    import types

    module = types.ModuleType("not_a_plugin")
    setattr(module, attribute, [int])
    monkeypatch.setitem(sys.modules, "not_a_plugin", module)
    assert main(["run", "--plugin", "not_a_plugin", *FAST]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"plugin 'not_a_plugin' provides <class 'int'>, expected a {base} subclass" in err


@pytest.mark.parametrize("platform, expected", [("darwin", 1000), ("freebsd", 1000 * 1024)])
def test_without_proc_resident_memory_reads_ru_maxrss_in_the_platforms_unit(monkeypatch, platform,
                                                                            expected):
    import builtins
    import resource
    import types

    from harness.core import memory

    real_open = builtins.open

    def no_proc(path, *args, **kwargs):
        if str(path).startswith("/proc/"):
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_proc)
    monkeypatch.setattr(memory.sys, "platform", platform)
    monkeypatch.setattr(resource, "getrusage", lambda who: types.SimpleNamespace(ru_maxrss=1000))
    assert memory.current_rss_bytes() == expected
