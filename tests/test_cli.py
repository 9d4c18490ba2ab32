"""The CLI end to end: exit codes, the JSON it writes, the messages it prints."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.cli import main

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--batch-sizes", "1", "--budget", "0.05"]


@pytest.fixture()
def cached(checkpoint, cache_dir, monkeypatch):
    """Point the CLI at the session's trained checkpoint."""
    monkeypatch.setenv("LSTM_HARNESS_CACHE", str(cache_dir))
    return cache_dir


def test_run_writes_every_documented_field(cached, tmp_path, capsys):
    out = tmp_path / "results.json"
    code = main(["run", "--backends", "reference,eager,onnxruntime", "--out", str(out), *FAST])
    assert code == 0
    data = json.loads(out.read_text())
    assert {"environment", "rows", "checks", "schema_version"} <= set(data)
    env = data["environment"]
    assert env["threads"]["torch_intra_op"] >= 1 and env["device"] == "cpu"
    assert {"torch", "onnxruntime", "onnx", "numpy", "python"} <= set(env["versions"])
    rows = {r["backend"]: r for r in data["rows"]}
    assert set(rows) == {"reference", "eager", "onnxruntime"}
    for row in rows.values():
        for key in ("backend", "device", "dtype", "batch_size", "seq_len", "median_ms", "p90_ms",
                    "throughput_seq_s", "max_abs_err", "agrees", "prepare_s", "samples_ms",
                    "h2d_ms", "d2h_ms"):
            assert row[key] is not None, key
        assert row["agrees"] is True and len(row["samples_ms"]) == row["rounds"] >= 3
        assert row["median_ms"] == pytest.approx(sorted(row["samples_ms"])[len(row["samples_ms"]) // 2],
                                                 rel=0.5)
    assert rows["eager"]["speedup_vs_eager"] == pytest.approx(1.0)
    shapes = {(c["batch_size"], c["seq_len"]) for c in data["checks"]}
    assert {(1, 50), (64, 50), (1024, 50), (1, 200), (64, 200), (1024, 200)} <= shapes
    printed = capsys.readouterr().out
    assert "onnxruntime" in printed and "✓" in printed


def test_a_disagreeing_backend_makes_run_exit_1(cached, capsys):
    code = main(["run", "--plugin", "tests.plugins.wrong_backend", "--backends", "eager,wrong",
                 *FAST])
    assert code == 1
    captured = capsys.readouterr()
    assert "✗" in captured.out and "FAILED" in captured.err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message; a GPU is present")
def test_cuda_without_a_gpu_exits_2_with_one_line():
    done = subprocess.run([sys.executable, "-m", "harness", "run", "--device", "cuda"],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "expected a CUDA device" in lines[0]


@pytest.mark.parametrize("argv, fragment", [
    (["run", "--backends", "egaer"], "did you mean eager"),
    (["run", "--batch-sizes", "0"], "integers >= 1, got 0"),
    (["run", "--batch-sizes", "1,x"], "got 'x'"),
    (["run", "--seq-len", "-5"], "got -5"),
    (["run", "--dtype", "fp8"], "unknown dtype 'fp8'"),
    (["run", "--device", "tpu"], "invalid choice: 'tpu'"),
    (["run", "--budget", "0"], "number > 0"),
    (["fly"], "invalid choice: 'fly'"),
])
def test_bad_input_exits_2_naming_expected_and_actual(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in " ".join(err.split()) and "Traceback" not in err


def test_unwritable_out_is_refused_before_any_work(cached, tmp_path, capsys):
    assert main(["run", "--out", str(tmp_path), *FAST]) == 2
    assert "writable file path" in capsys.readouterr().err


def test_debug_shows_the_traceback():
    with pytest.raises(Exception, match="did you mean eager"):
        main(["--debug", "run", "--backends", "egaer"])


def test_module_entry_point_runs():
    done = subprocess.run([sys.executable, "-m", "harness", "--help"], capture_output=True,
                          text=True, cwd=ROOT, check=False)
    assert done.returncode == 0 and "run" in done.stdout and "train" in done.stdout


def test_installed_console_script_runs():
    script = Path(sys.executable).parent / "harness"
    if not script.exists():
        pytest.skip("the project is not pip-installed into this interpreter's environment "
                    "(CI installs it with pip install -e)")
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "train" in done.stdout
