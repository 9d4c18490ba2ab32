"""The LSTMPredictor, its config, and the input check that guards every backend."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from harness.core.errors import InputError


@dataclass(frozen=True)
class ModelConfig:
    input_size: int = 1
    hidden_size: int = 64
    num_layers: int = 1
    output_size: int = 1

    def __post_init__(self) -> None:
        for name in ("input_size", "hidden_size", "num_layers", "output_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"model {name} must be an integer >= 1, got {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def label(self) -> str:
        """A short name for tables: ``h64 L1``, with ``in``/``out`` where they are not 1."""
        sizes = [f"in{self.input_size}"] if self.input_size != 1 else []
        sizes += [f"h{self.hidden_size}", f"L{self.num_layers}"]
        sizes += [f"out{self.output_size}"] if self.output_size != 1 else []
        return " ".join(sizes)

    @property
    def n_parameters(self) -> int:
        """How many numbers the weights hold."""
        return sum(math.prod(shape) for shape in parameter_shapes(self).values())


def parameter_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The state_dict keys of an LSTMPredictor with ``config``, and each tensor's shape."""
    shapes: dict[str, tuple[int, ...]] = {}
    gates, inputs = 4 * config.hidden_size, config.input_size
    for k in range(config.num_layers):
        shapes[f"lstm.weight_ih_l{k}"] = (gates, inputs)
        shapes[f"lstm.weight_hh_l{k}"] = (gates, config.hidden_size)
        shapes[f"lstm.bias_ih_l{k}"] = (gates,)
        shapes[f"lstm.bias_hh_l{k}"] = (gates,)
        inputs = config.hidden_size
    shapes["fc.weight"] = (config.output_size, config.hidden_size)
    shapes["fc.bias"] = (config.output_size,)
    return shapes


def infer_config(shapes: dict[str, tuple[int, ...]]) -> ModelConfig | None:
    """The config an LSTMPredictor's state_dict implies, read from its tensors' shapes:
    input_size from layer 0's input weights, hidden_size from its recurrent weights (or, where
    those are missing, the linear head's), num_layers from the layers present, output_size
    from the head. None when the shapes name no size at all; whether every tensor then fits
    is ``parameter_shapes``'s to say."""
    def dim(key: str, axis: int) -> int | None:
        shape = shapes.get(key)
        return shape[axis] if shape is not None and len(shape) > axis else None

    hidden = dim("lstm.weight_hh_l0", 1) or dim("fc.weight", 1)
    if hidden is None and (gates := dim("lstm.weight_ih_l0", 0)):
        hidden = gates // 4 or None
    inputs = dim("lstm.weight_ih_l0", 1)
    outputs = dim("fc.weight", 0) or dim("fc.bias", 0)
    if hidden is None:
        return None
    layers = 1
    while any(f"lstm.{name}_l{layers}" in shapes for name in
              ("weight_ih", "weight_hh", "bias_ih", "bias_hh")):
        layers += 1
    return ModelConfig(input_size=inputs or 1, hidden_size=hidden, num_layers=layers,
                       output_size=outputs or 1)


class LSTMPredictor(nn.Module):
    """An LSTM over the window; its last hidden state feeds a linear head."""

    def __init__(self, config: ModelConfig = ModelConfig()) -> None:
        super().__init__()
        self.config = config
        self.lstm = nn.LSTM(
            input_size=config.input_size,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            batch_first=True,
        )
        self.fc = nn.Linear(config.hidden_size, config.output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.fc(out[:, -1, :])


class LSTMStep(nn.Module):
    """One time step of an LSTMPredictor, sharing its weights: (x_t, h, c) -> (y_t, h', c').

    ``x_t`` is (batch, input_size); ``h`` and ``c`` are (num_layers, batch, hidden_size).
    Streaming N samples through it from zero states equals the windowed forward pass.
    """

    def __init__(self, predictor: LSTMPredictor) -> None:
        super().__init__()
        self.lstm = predictor.lstm
        self.fc = predictor.fc

    def forward(self, x_t: torch.Tensor, h: torch.Tensor, c: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out, (h_next, c_next) = self.lstm(x_t.unsqueeze(1), (h, c))
        return self.fc(out[:, 0, :]), h_next, c_next


def validate_input(x: object, input_size: int) -> np.ndarray:
    """Refuse anything that is not a finite float array of shape (batch>=1, seq_len>=1, input_size).

    Returns the array as numpy. This runs at the harness boundary so that a shape mistake
    (the notebook's re-run ``unsqueeze`` that produced a 10-D tensor) is named plainly here
    rather than deep inside ``aten::lstm``.
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy() if x.dtype != torch.bfloat16 else x.float().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise InputError(f"expected a float array of shape (batch, seq_len, {input_size}), "
                         f"got {type(x).__name__}")
    expected = f"(batch>=1, seq_len>=1, input_size={input_size})"
    if x.ndim != 3:
        raise InputError(f"expected a 3-D input of shape {expected}, got {x.ndim}-D shape "
                         f"{tuple(x.shape)}")
    if not np.issubdtype(x.dtype, np.floating):
        raise InputError(f"expected a floating-point input, got dtype {x.dtype}")
    batch, seq_len, features = x.shape
    if batch < 1 or seq_len < 1 or features != input_size:
        raise InputError(f"expected input of shape {expected}, got shape {tuple(x.shape)}")
    if not np.isfinite(x).all():
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise InputError(f"expected finite inputs, got {bad} NaN/Inf value(s) in shape "
                         f"{tuple(x.shape)}")
    return x
