"""How far each backend's answers are from the float64 reference as the model grows.

    python -m tools.error_by_size [--hidden 8,16,...] [--layers 1,2,3,4] [--dtype fp32]
                                  [--backends eager,torchscript,onnxruntime] [--weights both]

For every hidden size x layer count it builds two models through the backends' own
``prepare``: ``seeded``, PyTorch's initial weights (what the model-sweep preset times), and
``trained-like``, those weights scaled by ``--gain`` and the head rescaled so the outputs
reach about 1, as a trained sine predictor's do (the seeded model's outputs shrink as the
model grows, which would hide the error). Inputs: standard-normal and sine windows, batch 8,
seq_len 50, and standard-normal at seq_len 200. It prints one line per model and backend:
the largest absolute error, the largest output, and the largest share of the dtype's
default band (``harness.core.agreement.DEFAULT_TOLERANCES``) that any element used; 1.0
would be the edge of the band. The figures in ``docs/notes`` come from this script.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from backends.base import Target
from backends.reference import ReferenceModel
from backends.registry import load_registry
from harness.core import settings
from harness.core.agreement import DEFAULT_TOLERANCES, Tolerance
from harness.core.data import random_batch, sine_batch
from harness.core.model import LSTMPredictor, ModelConfig

PROBE = sine_batch(16, 50, 3)  # the windows whose outputs the trained-like head scales to 1


def seeded(config: ModelConfig, seed: int = 0) -> LSTMPredictor:
    torch.manual_seed(seed)
    return LSTMPredictor(config).eval()


def trained_like(config: ModelConfig, gain: float = 2.0, seed: int = 0) -> LSTMPredictor:
    """The seeded model with every LSTM weight times ``gain`` and the head rescaled so that
    its outputs on sine windows peak at 1."""
    model = seeded(config, seed)
    with torch.no_grad():
        for parameter in model.lstm.parameters():
            parameter.mul_(gain)
        peak = float(np.abs(ReferenceModel(model).forward(PROBE)).max())
        model.fc.weight.div_(peak)
        model.fc.bias.div_(peak)
    return model


def band_share(actual: np.ndarray, expected: np.ndarray, tolerance: Tolerance) -> float:
    """The largest ``|actual - expected| / (atol + rtol |expected|)`` over the elements."""
    return float((np.abs(actual - expected) / (tolerance.atol + tolerance.rtol * np.abs(expected))).max())


def measure(session, cases: list[tuple[np.ndarray, np.ndarray]], tolerance: Tolerance
            ) -> tuple[float, float, float]:
    """The largest absolute error, the largest reference output and the largest band share
    of ``session``'s answers over (input, float64 answer) ``cases``."""
    outputs = [session.to_numpy(session.run(session.to_native(x))) for x, _ in cases]
    pairs = [(y, expected) for y, (_, expected) in zip(outputs, cases, strict=True)]
    return (max(float(np.abs(y - e).max()) for y, e in pairs), max(float(np.abs(e).max()) for _, e in pairs),
            max(band_share(y, e, tolerance) for y, e in pairs))


def inputs_for(config: ModelConfig) -> dict[str, np.ndarray]:
    n = config.input_size
    return {"random50": random_batch(8, 50, n, 7), "sine50": sine_batch(8, 50, 7, n),
            "random200": random_batch(4, 200, n, 8)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--hidden", default="8,16,32,64,128,256,512,1024")
    parser.add_argument("--layers", default="1,2,3,4")
    parser.add_argument("--dtype", default="fp32", choices=tuple(DEFAULT_TOLERANCES))
    parser.add_argument("--backends", default="eager,torchscript,onnxruntime")
    parser.add_argument("--weights", default="both", choices=("both", "seeded", "trained-like"))
    parser.add_argument("--gain", type=float, default=2.0)
    args = parser.parse_args(argv)
    process = settings.apply(settings.default_settings())
    registry = load_registry()
    tolerance = DEFAULT_TOLERANCES[args.dtype]
    kinds = ("seeded", "trained-like") if args.weights == "both" else (args.weights,)
    print(f"{'weights':<13}{'hidden':>7}{'layers':>7}  {'backend':<12}{'max abs err':>12}"
          f"{'max |y|':>9}{'band used':>10}")
    for layers in (int(v) for v in args.layers.split(",")):
        for hidden in (int(v) for v in args.hidden.split(",")):
            config = ModelConfig(hidden_size=hidden, num_layers=layers)
            for kind in kinds:
                model = seeded(config) if kind == "seeded" else trained_like(config, args.gain)
                reference = ReferenceModel(model)
                cases = [(x, reference.forward(x)) for x in inputs_for(config).values()]
                with tempfile.TemporaryDirectory() as tmp:
                    for name in args.backends.split(","):
                        target = Target("cpu", args.dtype, Path(tmp), process.intra_op_threads)
                        backend = registry.create(name)
                        reason = backend.unavailable_reason(target)
                        if reason:
                            print(f"{kind:<13}{hidden:>7}{layers:>7}  {name:<12} unavailable: {reason}")
                            continue
                        err, peak, share = measure(backend.prepare(model, target), cases, tolerance)
                        print(f"{kind:<13}{hidden:>7}{layers:>7}  {name:<12}{err:>12.1e}{peak:>9.2f}"
                              f"{share:>10.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
