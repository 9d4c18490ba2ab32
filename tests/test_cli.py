"""The CLI end to end: exit codes, the JSON it writes, the messages it prints."""

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.cli.main import main
from harness.core.environment import kernel_env
from tests.conftest import FAST
from tests.results_fixture import undeclared

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_run_writes_every_documented_field(cached, tmp_path, capsys):
    out = tmp_path / "results.json"
    code = main(["run", "--backends", "reference,eager,onnxruntime", "--out", str(out), *FAST,
                 "--processes", "2"])
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
        # the median of the kept rounds of both processes, pooled
        assert row["median_ms"] == pytest.approx(statistics.median(row["samples_ms"]), rel=1e-9)
        assert sorted(set(row["samples_process"])) == [0, 1]
    assert rows["eager"]["speedup_vs_eager"] == pytest.approx(1.0)
    shapes = {(c["batch_size"], c["seq_len"]) for c in data["checks"]}
    assert {(1, 50), (64, 50), (1024, 50), (1, 200), (64, 200), (1024, 200)} <= shapes
    # two worker processes per backend, each with its rounds; the machine's load accounted
    for row in rows.values():
        assert row["processes"] == 2 and set(row["samples_process"]) == {0, 1}
        assert len(row["samples_foreign_load"]) == len(row["samples_ms"])
        assert row["verdict"] in ("valid", "contended") and row["foreign_load"] >= 0
    assert data["verdict"]["verdict"] in ("valid", "contended", "unsteady")
    # every fact a backend reports is kept, not only the ones a list allowed through
    assert {"artifact_sha256", "export_s", "exporter", "providers"} <= set(rows["onnxruntime"]["diagnostics"])
    # the peak is the best of every GEMM engine installed, each one recorded
    peak = env["peak"]
    assert {"torch", "numpy", "onnxruntime"} <= set(peak["by_engine"])
    assert env["peak_gflops"] == peak["gflops"] == max(peak["by_engine"].values())
    assert env["kernel_env"] == kernel_env()  # what chose the BLAS kernels, as it was set
    assert undeclared(data) == set()
    doc = (ROOT / "docs" / "results-schema.md").read_text()
    undocumented = {k for row in rows.values() for k in (*row, *row["diagnostics"]) if f"`{k}`" not in doc}
    assert undocumented == set()
    printed = capsys.readouterr().out
    assert "onnxruntime" in printed and "✓" in printed


@pytest.mark.slow
def test_a_disagreeing_backend_makes_run_exit_1(cached, capsys):
    code = main(["run", "--plugin", "tests.plugins.wrong_backend", "--backends", "eager,wrong",
                 *FAST])
    assert code == 1
    captured = capsys.readouterr()
    assert "✗" in captured.out and "FAILED" in captured.err


@pytest.mark.slow
def test_each_row_is_judged_by_the_checks_at_its_own_shape(cached, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(["run", "--plugin", "tests.plugins.wrong_backend", "--backends", "eager,wrong-at-64",
                 *FAST, "--batch-sizes", "1,64", "--out", str(out), "--no-history"])
    assert code == 1
    rows = {r["batch_size"]: r for r in json.loads(out.read_text())["rows"]
            if r["backend"] == "wrong-at-64"}
    assert rows[1]["agrees"] is True and rows[1]["max_abs_err"] < 1e-5
    assert rows[64]["agrees"] is False and rows[64]["max_abs_err"] == pytest.approx(1e-3, rel=0.01)


@pytest.mark.slow
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


@pytest.mark.parametrize("flag, where, fragment", [
    ("--out", "a-folder", "writable file path for --out, got {path}, which is a directory"),
    ("--out", "a-file/results.json", "writable file path for --out, got {path}"),
    ("--workdir", "a-file", "writable directory path for --workdir, got {path}, which is a file"),
    ("--db", "a-file/history.sqlite", "writable file path for --db, got {path}"),
])
def test_an_unwritable_output_is_refused_in_one_line_before_any_work(tmp_path, capsys, flag,
                                                                     where, fragment):
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "a-file").write_text("not a folder")
    path = tmp_path / where
    # No cached checkpoint: the refusal must come before the model is loaded or trained.
    code = main(["run", flag, str(path), "--cache-dir", str(tmp_path / "no-cache"), *FAST])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("error: expected a ") and fragment.format(path=path) in lines[0]
    assert not (tmp_path / "no-cache").exists()


def test_debug_shows_the_traceback_and_bad_input_still_exits_2(capsys):
    assert main(["--debug", "run", "--backends", "egaer"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "did you mean eager" in err
    # a --debug where the subcommand takes none is bad input, not a call for tracebacks
    assert main(["history", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "unrecognized arguments: --debug" in err


@pytest.mark.parametrize("flag, value, said", [
    ("--batch-sizes", "1,1", "expects each value once, got 1 twice"),
    ("--dtype", "fp32,fp32", "expects each name once, got 'fp32' twice"),
])
def test_a_value_given_twice_is_refused(flag, value, said, capsys):
    assert main(["run", flag, value]) == 2 and said in capsys.readouterr().err


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_backend_k_times_slower_than_eager_gets_a_speedup_of_one_over_k(cached, tmp_path):
    """eager's time over the backend's, paired round by round: 1/3 for thrice-eager."""
    from tests.plugins.slow_backend import K

    out = tmp_path / "slow.json"
    for _ in range(2):  # a second try, should something else take the machine during the first
        code = main(["run", "--plugin", "tests.plugins.slow_backend", "--backends",
                     "eager,thrice-eager", "--batch-sizes", "64", "--budget", "1", "--out", str(out),
                     "--no-history", "--allow-unsteady"])  # pairing holds 1/k on an unsteady host
        if code == 0:
            break
    assert code in (0, 3)  # 3: the machine was busy, and the run says so
    row = next(r for r in json.loads(out.read_text())["rows"] if r["backend"] == "thrice-eager")
    assert row["agrees"] is True
    assert row["speedup_ci95_low"] <= row["speedup_vs_eager"] <= row["speedup_ci95_high"]
    # Where the run says its figures are less sure (a busy machine, an unsteady host, or a
    # noisy row) the figure is only trusted to be the right way up; otherwise it is 1/k.
    trusted = json.loads(out.read_text())["verdict"]["verdict"] == "valid" and not row["noisy"]
    assert row["speedup_vs_eager"] == pytest.approx(1 / K, rel=0.1 if trusted else 0.35)
