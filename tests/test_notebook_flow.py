"""The seed notebook's flow, end to end: train the tutorial's LSTMPredictor on its sine,
save the state_dict, and hand the file to `python -m harness run --checkpoint`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from backends.registry import load_registry
from harness.core.checkpoint import sha256_file
from tests.conftest import FAST

ROOT = Path(__file__).resolve().parent.parent


class LSTMPredictor(nn.Module):
    """The notebook's class, as the classic sine tutorial writes it."""

    def __init__(self, input_size=1, hidden_size=64, num_layers=1, output_size=1):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True)
        self.fc = nn.Linear(hidden_size, output_size)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.fc(out[:, -1, :])


def notebook_training(epochs: int = 3) -> LSTMPredictor:
    """The tutorial's cells: the sine, 50-sample windows, the input unsqueezed once, Adam."""
    torch.manual_seed(0)
    data = np.sin(np.linspace(0, 100, 1000))
    seq_len = 50
    x = np.array([data[i:i + seq_len] for i in range(len(data) - seq_len)])
    y = data[seq_len:]
    x = torch.tensor(x, dtype=torch.float32).unsqueeze(-1)  # (950, 50, 1): unsqueezed once
    y = torch.tensor(y, dtype=torch.float32).unsqueeze(-1)
    model = LSTMPredictor()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    loss_fn = nn.MSELoss()
    for _ in range(epochs):
        for begin in range(0, len(x), 64):
            optimizer.zero_grad()
            loss = loss_fn(model(x[begin:begin + 64]), y[begin:begin + 64])
            loss.backward()
            optimizer.step()
    return model.eval()


@pytest.mark.slow
def test_the_notebook_s_saved_state_dict_runs_through_every_backend(tmp_path):
    model = notebook_training()
    torch.save(model.state_dict(), tmp_path / "model.pt")
    out = tmp_path / "results.json"
    # Checked at the timed shape: the full grid would build six AOTInductor packages for this
    # one model (three lengths, two batch kinds); the grid itself is tested on other models.
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--checkpoint", "model.pt", "--out", str(out),
         "--no-history", "--check-grid", "timed", *FAST],
        capture_output=True, text=True, cwd=tmp_path, check=False, timeout=1800,
        env={**os.environ, "PYTHONPATH": str(ROOT), "LSTM_HARNESS_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    sha = sha256_file(tmp_path / "model.pt")
    assert data["model"]["weights_sha256"] == sha and data["model"]["source"] == "file"
    assert data["model"]["config"] == {"input_size": 1, "hidden_size": 64, "num_layers": 1,
                                       "output_size": 1}
    rows = {r["backend"]: r for r in data["rows"]}
    assert set(rows) == set(load_registry().default_for("cpu"))  # every CPU backend
    for row in rows.values():
        assert row["status"] == "ok" and row["agrees"] is True, row
        assert row["median_ms"] > 0 and row["model_sha256"] == sha
    assert all(c["agrees"] and c["model_sha256"] == sha for c in data["checks"])
    # nothing was trained (the file was the model): the cache holds built artifacts only,
    # AOTInductor's packages and the one ONNX export
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["aot-inductor", "onnx"]
    assert "h64" not in done.stdout  # one model: the table as it always was
