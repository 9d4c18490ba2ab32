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
from harness.core.model import LSTMPredictor, ModelConfig
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
    (["run", "--threads", "1,2"], "--threads expects an integer from 1 to 1024, got '1,2'"),
    (["run", "--processes", "2,3"], "--processes expects an integer from 1 to 64, got '2,3'"),
    (["run", "--horizon", "10,20"], "--horizon expects an integer >= 1, got '10,20'"),
    (["run", "--backend-timeout", "0"], "--backend-timeout expects a number > 0 and <= 86400, got 0"),
    (["run", "--backend-timeout", "soon"], "--backend-timeout expects a number, got 'soon'"),
    # not finite: a budget or a timeout that never ends
    (["run", "--backend-timeout", "inf"], "--backend-timeout expects a number > 0 and <= 86400, got inf"),
    # finite, but past what the clocks, LoadGen and torch take: refused, not met mid-run
    (["run", "--backend-timeout", "1e300"], "--backend-timeout expects a number > 0 and <= 86400"),
    (["run", "--threads", "99999999999999999999"], "--threads expects an integer from 1 to 1024"),
    (["run", "--scenario", "rollout", "--horizon", "1000000000000"],
     "'horizon' must be an integer from 1 to 100000, got 1000000000000"),
    (["run", "--scenario", "server", "--latency-bound-ms", "1e300"],
     "'latency_bound_ms' must be a number of milliseconds > 0, at most 86400000 (a day)"),
    (["history", "--limit", "99999999999999999999"],
     "--limit expects an integer from 1 to 9223372036854775807"),
    (["compare", "99999999999999999999", "1"], "got '99999999999999999999'"),
    (["compare", "²", "1"], "results file not found: ²"),
    # an empty path or module name is no path or module at all
    (["doctor", "--checkpoint", ""], "--checkpoint expects a path to a file, got ''"),
    (["report", "x.json", "--checkpoint", ""], "--checkpoint expects a path to a file, got ''"),
    (["run", "--plugin", ""], "expected a plugin module name, dotted and importable"),
    (["run", "--cache-dir", ""], "--cache-dir expects a path to a directory, got ''"),
    (["run", "--workdir", " "], "--workdir expects a path to a directory, got ' '"),
    (["run", "--out", ""], "--out expects a path to a file, got ''"),
    (["history", "--db", ""], "--db expects a path to a file, got ''"),
    (["report", "x.json", "--output", ""], "--output expects a path to a file, got ''"),
    (["run", "--plugin", "../x.py"], "got '../x.py'"),
    (["run", "--budget", "nan"], "--budget expects a number > 0, got nan"),
    (["run", "--max-canary-spread", "0.9"], "--max-canary-spread expects a number >= 1, got 0.9"),
    # an infinite band would call every backend agreeing
    (["run", "--atol", "inf"], "--atol expects a number >= 0, got inf"),
    (["run", "--rtol", "-1"], "--rtol expects a number >= 0, got -1"),
    (["run", "--seed", "-1"], "--seed expects an integer >= 0, got -1"),
    (["run", "--backends", ","], "--backends expects one or more comma-separated names, got ','"),
    (["run", "--dtype", " , "], "--dtype expects one or more comma-separated names, got ' , '"),
    (["history", "--limit", "0"], "--limit expects an integer from 1 to 9223372036854775807, got 0"),
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
    check_fits([(1024, 200)], ModelConfig(), 5, 4, available=gib)  # about 0.1 GiB: fine
    with pytest.raises(InputError, match="got batch 100000 × seq_len 1000, which needs about"):
        check_fits([(100_000, 1000)], ModelConfig(), 5, 4, available=gib)


def test_memory_estimate_counts_the_weights_and_two_layers_activations_at_most():
    config = ModelConfig(input_size=3, hidden_size=16, num_layers=2, output_size=2)
    assert config.n_parameters == sum(p.numel() for p in LSTMPredictor(config).parameters())
    # hidden 8192: 4·8192·(1 + 8192 + 2) + 8193 parameters, 1 GiB in float32
    big = ModelConfig(hidden_size=8192)
    with pytest.raises(InputError, match=r"expected a model small enough to fit in memory, got "
                                         r"268,541,953 parameters \(hidden_size 8192, 1 layer"):
        check_fits([(1, 50)], big, 5, 4, available=8 * 2**30)
    check_fits([(1, 50)], big, 1, 4, available=23 * 2**30)
    # the weights (4 GiB) beside a shape whose activations alone (16 GiB) would fit in 18.4
    with pytest.raises(InputError, match="got batch 1024 × seq_len 250, which needs about"):
        check_fits([(1024, 250)], big, 1, 4, available=23 * 2**30)
    # the reference frees a layer's outputs once the next has read them: four layers need no
    # more than two (hidden 512, batch 1024, seq 500: 2 GiB a layer)
    layers = [ModelConfig(hidden_size=512, num_layers=n) for n in (2, 4)]
    for config in layers:
        check_fits([(1024, 500)], config, 1, 4, available=6 * 2**30)
    with pytest.raises(InputError, match="got batch 1024 × seq_len 500"):
        check_fits([(1024, 500)], layers[0], 1, 4, available=9 * 2**29)


def test_train_refuses_a_model_it_cannot_hold_before_any_epoch(tmp_path, capsys):
    assert main(["train", "--hidden-size", "100000", "--epochs", "1",
                 "--cache-dir", str(tmp_path / "c")]) == 2
    captured = capsys.readouterr()
    assert ("got 40,001,300,001 parameters (hidden_size 100000, 1 layer(s)), whose weights, "
            "gradients and optimizer state for training need about") in " ".join(captured.err.split())
    assert "epoch" not in captured.out + captured.err
    assert main(["run", "--hidden-size", "100000", "--batch-sizes", "1", "--no-history",
                 "--cache-dir", str(tmp_path / "c")]) == 2
    assert "expected a model small enough to fit in memory" in capsys.readouterr().err


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


def test_no_output_may_overwrite_what_the_command_reads(checkpoint, tmp_path, capsys):
    model = tmp_path / "m.safetensors"
    model.write_bytes(checkpoint.weights_path.read_bytes())
    db = tmp_path / "history.sqlite"
    results = tmp_path / "r.json"
    results.write_text("{}")
    cases = [
        (["run", "--checkpoint", str(model), "--out", str(model), *FAST],
         f"expected --out to name a file of its own, got {model}, which is the model file", model),
        (["run", "--db", str(db), "--out", str(db), *FAST],
         f"expected --db to name a file of its own, got {db}, which is the --out file", None),
        (["report", str(results), "--format", "md", "--output", str(results)],
         f"expected --output to name a file of its own, got {results}, which is the results file", results),
    ]
    # a harness checkpoint is read as its weights and the JSON record beside them
    record = checkpoint.weights_path.with_suffix(".json")
    cases.append((["run", "--checkpoint", str(checkpoint.weights_path), "--out", str(record), *FAST],
                  f"expected --out to name a file of its own, got {record}, which is the model file", record))
    cases.append((["report", str(results), "--checkpoint", str(checkpoint.weights_path), "--output",
                   str(record)],
                  f"expected --output to name a file of its own, got {record}, which is the model file",
                  record))
    for argv, said, kept in cases:
        before = kept.read_bytes() if kept else None
        assert main(argv) == 2
        captured = capsys.readouterr()
        assert said in " ".join(captured.err.split()) and "epoch" not in captured.err
        if kept:
            assert kept.read_bytes() == before
    assert not db.exists()


def test_a_history_file_that_is_not_a_database_is_refused_before_any_work_and_kept(tmp_path, capsys):
    db = tmp_path / "history.sqlite"
    db.write_text('{"not": "a database"}')
    assert main(["run", "--db", str(db), *FAST]) == 2
    err = capsys.readouterr().err
    assert f"expected an lstm-harness history database at {db}" in err and "epoch" not in err
    assert db.read_text() == '{"not": "a database"}'


@pytest.mark.parametrize("content, said", [
    # an infinite band would call a wrong backend agreeing
    ("[tolerances.fp32]\natol = inf\nrtol = 1e-4\n",
     "key 'tolerances.fp32.atol' must be a number >= 0, got inf"),
    ("[tolerances.fp32]\natol = 1e-5\nrtol = nan\n",
     "key 'tolerances.fp32.rtol' must be a number >= 0, got nan"),
    ("budget_s = inf\n", "key 'budget_s' must be a number > 0, got inf"),
    ("mode = \"server\"\nmax_wait_ms = inf\n", "key 'max_wait_ms' must be a number of milliseconds >= 0"),
    ("mode = \"offline\"\nduration_s = inf\n", "key 'duration_s' must be a number of seconds > 0"),
    ("mode = \"multi-stream\"\nsamples_per_query = 1000000000000\n",
     "key 'samples_per_query' must be an integer from 1 to 100000"),
    ("processes = 1000\n", "key 'processes' must be an integer from 1 to 64"),
    ("batch_sizes = [1, 1]\n", "key 'batch_sizes' must be a non-empty list of integers >= 1, each once"),
    ("backends = [\"eager\", \"eager\"]\n",
     "key 'backends' must be a non-empty list of backend names, each once"),
    ("\ufeffname = \"x\"\n", "the file starts with a byte-order mark"),
])
def test_a_scenario_file_with_a_value_the_flags_refuse_is_refused_too(content, said, tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text(content, encoding="utf-8")
    assert main(["run", "--scenario", str(path), "--no-history"]) == 2
    assert said in " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize("make, said", [
    (lambda p: p.mkdir(), "which is a directory"),
    (lambda p: p.write_bytes(b'name = "\xff\xfe"\n'), "is not UTF-8 text"),
])
def test_a_scenario_path_that_is_no_toml_text_is_refused(make, said, tmp_path, capsys):
    path = tmp_path / "s.toml"
    make(path)
    assert main(["run", "--scenario", str(path), "--no-history"]) == 2
    assert said in capsys.readouterr().err


@pytest.mark.parametrize("source, said", [
    ("raise RuntimeError('broken plugin')", "raised RuntimeError while being imported: broken plugin"),
    ("import sys\nsys.exit(0)", "raised SystemExit while being imported"),
    ("BACKENDS = 5", "provides 5, expected a list of backends.base.Backend subclasses"),
])
def test_a_plugin_that_fails_or_lists_no_list_exits_2(source, said, tmp_path, monkeypatch, capsys):
    (tmp_path / "odd_plugin.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "odd_plugin", raising=False)
    assert main(["doctor", "--plugin", "odd_plugin"]) == 2
    assert said in " ".join(capsys.readouterr().err.split())


def test_a_name_too_long_for_the_file_system_is_refused_before_any_work(tmp_path, capsys):
    longest = os.pathconf(tmp_path, "PC_NAME_MAX")
    out = tmp_path / ("z" * (longest - len(".json")) + ".json")  # fits, but its files folder would not
    too_long = tmp_path / ("x" * longest + ".json")
    assert main(["run", "--out", str(too_long), *FAST]) == 2
    assert "is longer than a file name may be here" in capsys.readouterr().err
    assert main(["run", "--scenario", "single-stream", "--out", str(out), "--no-history"]) == 2
    err = capsys.readouterr().err
    assert "the run's files folder" in err and "is longer than a file name may be here" in err


def test_a_cache_named_by_the_environment_that_is_a_file_exits_2_before_any_training(tmp_path,
                                                                                   monkeypatch, capsys):
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("a file")
    monkeypatch.setenv("LSTM_HARNESS_CACHE", str(not_a_folder))
    assert main(["run", "--epochs", "1", "--hidden-size", "8", "--no-history"]) == 2
    captured = capsys.readouterr()
    assert "directory path for LSTM_HARNESS_CACHE" in captured.err and "epoch" not in captured.err


def test_results_that_are_no_regular_file_or_nest_without_end_are_refused(tmp_path, capsys):
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)  # reading it would wait for a writer for ever, as /dev/zero never ends
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    for path, said in ((fifo, "which is not a regular file"), (deep, "nests deeper than any results file")):
        for argv in (["report", str(path)], ["compare", str(path), str(path)]):
            assert main(argv) == 2
            assert said in capsys.readouterr().err


def test_a_model_file_with_nan_weights_is_refused_not_blamed_on_a_backend(checkpoint, tmp_path,
                                                                        capsys):
    import torch

    state = {k: v.clone() for k, v in checkpoint.model.state_dict().items()}
    state["lstm.weight_hh_l0"][3, 5] = float("nan")
    path = tmp_path / "nan.pt"
    torch.save(state, path)
    assert main(["run", "--checkpoint", str(path), *FAST]) == 2
    assert "lstm.weight_hh_l0: expected finite values, found NaN or infinity" in capsys.readouterr().err


def test_a_history_database_named_by_the_environment_is_called_so(tmp_path, monkeypatch, capsys):
    db = tmp_path / "history.sqlite"
    monkeypatch.setenv("LSTM_HARNESS_DB", str(db))
    assert main(["run", "--out", str(db), *FAST]) == 2
    assert f"expected LSTM_HARNESS_DB to name a file of its own, got {db}, which is the --out file" \
        in " ".join(capsys.readouterr().err.split())
    assert not db.exists()
