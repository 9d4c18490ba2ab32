"""The gold standard: a float64 NumPy forward pass written from the LSTM equations.

It never calls torch. PyTorch's gate order is i, f, g, o:
    i = sigma(W_ii x + b_ii + W_hi h + b_hi)      f = sigma(W_if x + b_if + W_hf h + b_hf)
    g = tanh(W_ig x + b_ig + W_hg h + b_hg)       o = sigma(W_io x + b_io + W_ho h + b_ho)
    c' = f * c + i * g                            h' = o * tanh(c')
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backends.base import Backend, Session, Target
from harness.core.model import LSTMPredictor
from harness.core.targets import REFERENCE_DTYPE


@dataclass(frozen=True)
class LayerWeights:
    w_ih: np.ndarray  # (4H, input)
    w_hh: np.ndarray  # (4H, H)
    bias: np.ndarray  # (4H,) = b_ih + b_hh


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # exp of -|z| never overflows: 1 / (1 + e^-z) for z >= 0, e^z / (1 + e^z) below.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


class ReferenceModel:
    """The LSTMPredictor's weights as float64 arrays, and its forward pass."""

    def __init__(self, model: LSTMPredictor) -> None:
        state = {k: v.detach().cpu().double().numpy() for k, v in model.state_dict().items()}
        self.hidden_size = model.config.hidden_size
        self.layers = [
            LayerWeights(state[f"lstm.weight_ih_l{k}"], state[f"lstm.weight_hh_l{k}"],
                         state[f"lstm.bias_ih_l{k}"] + state[f"lstm.bias_hh_l{k}"])
            for k in range(model.config.num_layers)
        ]
        self.fc_w = state["fc.weight"]
        self.fc_b = state["fc.bias"]

    def step(self, layer: LayerWeights, x_t: np.ndarray, h: np.ndarray, c: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
        hs = self.hidden_size
        z = x_t @ layer.w_ih.T + h @ layer.w_hh.T + layer.bias
        i = _sigmoid(z[:, 0:hs])
        f = _sigmoid(z[:, hs:2 * hs])
        g = np.tanh(z[:, 2 * hs:3 * hs])
        o = _sigmoid(z[:, 3 * hs:4 * hs])
        c = f * c + i * g
        h = o * np.tanh(c)
        return h, c

    def _layers(self, x: np.ndarray, h0: np.ndarray | None, c0: np.ndarray | None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The top layer's hidden state at every step (batch, seq_len, hidden), and the final
        h and c of every layer (num_layers, batch, hidden); states start at zero by default."""
        x = np.asarray(x, dtype=np.float64)
        batch, seq_len, _ = x.shape
        zeros = np.zeros((len(self.layers), batch, self.hidden_size))
        h0 = zeros if h0 is None else np.asarray(h0, dtype=np.float64)
        c0 = zeros if c0 is None else np.asarray(c0, dtype=np.float64)
        seq, hs, cs = x, [], []
        for k, layer in enumerate(self.layers):
            h, c = h0[k], c0[k]
            outputs = np.empty((batch, seq_len, self.hidden_size))
            for t in range(seq_len):
                h, c = self.step(layer, seq[:, t, :], h, c)
                outputs[:, t, :] = h
            seq = outputs
            hs.append(h)
            cs.append(c)
        return seq, np.stack(hs), np.stack(cs)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self._layers(x, None, None)[0][:, -1, :] @ self.fc_w.T + self.fc_b

    def stream(self, x: np.ndarray, h0: np.ndarray | None = None, c0: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Outputs at every step (batch, seq_len, output) and the final (h, c), in float64:
        what a streaming step model must reproduce sample by sample."""
        top, h, c = self._layers(x, h0, c0)
        return top @ self.fc_w.T + self.fc_b, h, c


class ReferenceSession(Session):
    def __init__(self, model: ReferenceModel) -> None:
        self._model = model

    def to_native(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x, dtype=np.float64)

    def run(self, x: np.ndarray) -> np.ndarray:
        return self._model.forward(x)

    def to_numpy(self, y: np.ndarray) -> np.ndarray:
        return y


class ReferenceStepSession(Session):
    """The float64 step: native input and output are (x_t, h, c) tuples."""

    def __init__(self, model: ReferenceModel) -> None:
        self._model = model

    def to_native(self, xs: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        return tuple(np.ascontiguousarray(x, dtype=np.float64) for x in xs)

    def run(self, x: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        x_t, h, c = x
        y, h, c = self._model.stream(x_t[:, np.newaxis, :], h, c)
        return y[:, 0, :], h, c

    def to_numpy(self, ys: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        return ys


class ReferenceBackend(Backend):
    name = "reference"
    summary = "float64 NumPy LSTM written from the equations; the gold standard (CPU only)"
    devices = ("cpu",)
    # The comparator, not a runtime anyone ships: it checks every backend's answers from the
    # parent in every run, and is timed only where listed (--backends reference,...): its
    # own workers, self-checks and slow rounds would lengthen every default run. Timed, it
    # is timed on its own, as its slow BLAS rounds would disturb the others' pairing.
    in_default_set = False
    interleaved = False
    listed_off_device = False

    def computes_in(self, dtype: str) -> str:
        return REFERENCE_DTYPE

    def unavailable_reason(self, target: Target) -> str | None:
        if target.device != "cpu":
            return "the float64 NumPy reference runs on the CPU only"
        return None

    def prepare(self, model: LSTMPredictor, target: Target) -> Session:
        return ReferenceSession(ReferenceModel(model))

    def prepare_step(self, model: LSTMPredictor, target: Target) -> Session:
        return ReferenceStepSession(ReferenceModel(model))
