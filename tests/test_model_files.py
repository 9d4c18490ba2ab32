"""A user's model file: what users save is read (its sizes from the weights' shapes), what
should be refused is refused in one line with exit 2, and nothing in a file ever runs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from harness.cli.main import main
from harness.core.checkpoint import open_checkpoint, paths_for, sha256_file
from harness.core.errors import CheckpointError
from harness.core.model import ModelConfig, infer_config, parameter_shapes
from harness.core.training import TrainConfig
from tests.test_notebook_flow import LSTMPredictor  # the notebook's own class


class _Payload:
    """Unpickling this runs a shell command: what a malicious checkpoint would carry."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def _notebook_model(**sizes) -> LSTMPredictor:
    torch.manual_seed(3)
    return LSTMPredictor(**sizes).eval()


def _same_predictions(ours: torch.nn.Module, theirs: torch.nn.Module, input_size: int) -> None:
    x = torch.randn(4, 50, input_size)
    with torch.inference_mode():
        assert torch.equal(ours(x), theirs(x))


@pytest.mark.parametrize("sizes", [{}, {"input_size": 3, "hidden_size": 8, "num_layers": 4,
                                        "output_size": 2}, {"hidden_size": 1024, "num_layers": 2}])
def test_a_saved_state_dict_is_read_with_its_sizes_from_the_shapes(tmp_path, sizes):
    theirs = _notebook_model(**sizes)
    path = tmp_path / "model.pt"
    torch.save(theirs.state_dict(), path)
    checkpoint = open_checkpoint(path)
    assert checkpoint.model.config == ModelConfig(**sizes)
    assert checkpoint.sha256 == sha256_file(path)
    info = checkpoint.info()
    assert (info["source"], info["format"], info["val_mse"]) == ("file", "torch", None)
    assert info["config"] == ModelConfig(**sizes).to_dict() and info["file_dtypes"] == ["float32"]
    _same_predictions(checkpoint.model, theirs, ModelConfig(**sizes).input_size)


def test_a_safetensors_file_is_read_whatever_its_name(tmp_path):
    theirs = _notebook_model(hidden_size=32, num_layers=2)
    path = tmp_path / "weights.bin"  # the format is told by the bytes, not the name
    save_file({k: v.contiguous() for k, v in theirs.state_dict().items()}, str(path))
    checkpoint = open_checkpoint(path)
    assert checkpoint.model.config == ModelConfig(hidden_size=32, num_layers=2)
    assert checkpoint.metadata["format"] == "safetensors"
    _same_predictions(checkpoint.model, theirs, 1)


def test_half_precision_weights_run_as_float32_and_the_record_says_so(tmp_path):
    theirs = _notebook_model(hidden_size=16)
    path = tmp_path / "half.pt"
    torch.save({k: v.half() for k, v in theirs.state_dict().items()}, path)
    checkpoint = open_checkpoint(path)
    assert checkpoint.info()["file_dtypes"] == ["float16"]
    assert all(p.dtype == torch.float32 for p in checkpoint.model.parameters())


def test_the_harness_checkpoint_is_read_by_its_weights_or_its_record(checkpoint):
    for path in (checkpoint.weights_path, checkpoint.weights_path.with_suffix(".json")):
        again = open_checkpoint(path)
        assert again.sha256 == checkpoint.sha256 and again.source == "trained"
        assert again.info()["val_mse"] == checkpoint.metadata["val_mse"]


def test_the_config_is_inferred_from_shapes_for_every_size():
    for config in (ModelConfig(), ModelConfig(5, 8, 4, 3), ModelConfig(hidden_size=1024, num_layers=3)):
        assert infer_config(parameter_shapes(config)) == config
    assert infer_config({"encoder.weight": (3, 4)}) is None


# -- what is refused: one line each, exit 2, through every command that takes a file -------
def _pickled_module(path: Path) -> None:
    torch.save(_notebook_model(), path)


def _malicious(path: Path) -> None:
    torch.save({"lstm.weight_ih_l0": _Payload()}, path)


def _wrong_keys(path: Path) -> None:
    state = _notebook_model().state_dict()
    state["lstm.weight_hh_l0"] = torch.zeros(256, 32)  # hidden 64 elsewhere
    del state["fc.bias"]
    state["head.weight"] = torch.zeros(1, 64)
    torch.save(state, path)


def _truncated_pt(path: Path) -> None:
    torch.save(_notebook_model().state_dict(), path)
    path.write_bytes(path.read_bytes()[:3000])


def _truncated_safetensors(path: Path) -> None:
    save_file(dict(_notebook_model().state_dict()), str(path))
    path.write_bytes(path.read_bytes()[:2000])


def _not_a_checkpoint(path: Path) -> None:
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))  # a .npy file: neither torch.save nor safetensors


def _a_list(path: Path) -> None:
    torch.save([torch.zeros(3)], path)


BAD_FILES = {
    "pickled module": (_pickled_module, "test_notebook_flow.LSTMPredictor "
                       "object, not a state_dict", "torch.save(model.state_dict(), path)"),
    "malicious pickle": (_malicious, "holds a pickled posix.system object", "refuses"),
    "wrong and missing keys": (_wrong_keys, "does not fit an LSTMPredictor with the sizes its shapes "
                               "give (input_size 1, hidden_size 32, num_layers 1, output_size 1)",
                               "missing fc.bias (expected (1,))"),
    "truncated .pt": (_truncated_pt, "is not a readable torch.save file (truncated or corrupt?)", ""),
    "truncated safetensors": (_truncated_safetensors, "is not a readable safetensors file", ""),
    "not a checkpoint": (_not_a_checkpoint, "expected a state_dict saved with "
                         "torch.save(model.state_dict(), path) or a safetensors file", "neither"),
    "a list": (_a_list, "to hold a state_dict (a dict of tensors", "got a list"),
}


@pytest.mark.parametrize("kind", BAD_FILES)
@pytest.mark.parametrize("command", [["run", "--backends", "eager", "--batch-sizes", "1"],
                                     ["doctor"]])
def test_a_bad_file_gives_one_line_and_exit_2_and_nothing_in_it_runs(tmp_path, monkeypatch, capsys,
                                                                     kind, command):
    monkeypatch.chdir(tmp_path)
    make, *fragments = BAD_FILES[kind]
    path = tmp_path / "model.pt"
    make(path)
    code = main([*command, "--checkpoint", str(path), "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    message = " ".join(err.split())
    assert message.startswith(f"error: {path}") or message.startswith("error: expected")
    for fragment in fragments:
        assert fragment in message
    assert not (tmp_path / "PWNED").exists()
    assert not (tmp_path / "cache").exists()  # refused before any model was trained


def test_wrong_keys_name_every_key_with_the_shapes_expected_and_found(tmp_path):
    path = tmp_path / "model.pt"
    _wrong_keys(path)
    with pytest.raises(CheckpointError) as info:
        open_checkpoint(path)
    message = str(info.value)
    assert "lstm.weight_ih_l0: expected (128, 1), found (256, 1)" in message
    assert "fc.weight: expected (1, 32), found (1, 64)" in message
    assert "missing fc.bias (expected (1,))" in message
    assert "unexpected head.weight (found (1, 64))" in message


def test_a_missing_file_or_a_directory_is_refused_before_any_work(tmp_path, capsys):
    for path, state in ((tmp_path / "nope.pt", "does not exist"), (tmp_path, "is a directory"),
                        (Path(os.devnull), "is not a regular file")):
        assert main(["run", "--checkpoint", str(path), "--cache-dir", str(tmp_path / "c")]) == 2
        assert f"expected a checkpoint file, got {path}, which {state}" in capsys.readouterr().err
    assert main(["doctor", "--checkpoint", os.devnull]) == 2
    assert "which is not a regular file" in capsys.readouterr().err


def test_checkpoint_and_sizes_together_are_refused(tmp_path, capsys):
    path = tmp_path / "model.pt"
    torch.save(_notebook_model().state_dict(), path)
    assert main(["run", "--checkpoint", str(path), "--hidden-size", "8"]) == 2
    assert "expected either --checkpoint or model sizes to train, got both --checkpoint and " \
           "--hidden-size" in " ".join(capsys.readouterr().err.split())


def test_rollout_is_refused_for_a_file_whose_output_size_differs_from_its_input_size(tmp_path, capsys):
    path = tmp_path / "model.pt"
    torch.save(_notebook_model(output_size=2).state_dict(), path)
    code = main(["run", "--scenario", "rollout", "--checkpoint", str(path), "--backends", "eager"])
    assert code == 2
    assert "output_size (2) must equal input_size (1)" in " ".join(capsys.readouterr().err.split())


def test_doctor_shows_the_sizes_read_from_the_file_and_what_can_run_it(tmp_path, capsys):
    path = tmp_path / "model.pt"
    torch.save(_notebook_model(input_size=3, hidden_size=8, num_layers=2, output_size=2).state_dict(),
               path)
    assert main(["doctor", "--checkpoint", str(path)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "model: in3 h8 L2 out2 (input_size 3, hidden_size 8, num_layers 2, output_size 2;" in out
    assert f"sha256 {sha256_file(path)}" in out
    assert "forward: usable; streaming: usable; rollout: refused: a rollout feeds predictions" in out


def test_train_takes_the_constructor_arguments_and_records_the_validation_mse(tmp_path, capsys):
    cache = tmp_path / "cache"
    args = ["--input-size", "2", "--hidden-size", "8", "--num-layers", "2", "--output-size", "3",
            "--epochs", "1", "--cache-dir", str(cache)]
    assert main(["train", *args]) == 0
    config = TrainConfig(model=ModelConfig(2, 8, 2, 3), epochs=1)
    weights, _ = paths_for(cache, config)
    checkpoint = open_checkpoint(weights)
    assert checkpoint.config == config and checkpoint.model.config == config.model
    assert np.isfinite(checkpoint.metadata["val_mse"]) and checkpoint.metadata["val_mse"] > 0
    assert '"hidden_size": 8' in capsys.readouterr().out
