"""Export the LSTMPredictor to ONNX with dynamic batch and seq_len, in a process of its own.

With ``--step``, the streaming step model is exported instead: inputs x (batch, input), h and
c (num_layers, batch, hidden); outputs y, h_out, c_out; batch dynamic.

The dynamo exporter silently fixes seq_len when a ``torch.compile`` ran earlier in the same
process, so the ONNX backend always exports through ``python -m backends.onnx_export`` in a
fresh interpreter. Weights travel as safetensors, never as a pickle.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file

from harness.model import LSTMPredictor, LSTMStep, ModelConfig

OPSET = 18
STEP_INPUTS = ("x", "h", "c")
STEP_OUTPUTS = ("y", "h_out", "c_out")


DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


def export(model: LSTMPredictor, path: Path, dtype: torch.dtype = torch.float32) -> None:
    model = model.to(dtype)
    example = torch.zeros(2, 8, model.config.input_size, dtype=dtype)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq_len")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (example,), str(path), dynamo=True, opset_version=OPSET,
                          input_names=["x"], output_names=["y"],
                          dynamic_shapes=({0: batch, 1: seq},), external_data=False,
                          verbose=False)


def export_step(model: LSTMPredictor, path: Path, dtype: torch.dtype = torch.float32) -> None:
    cfg = model.config
    model = model.to(dtype)
    state = torch.zeros(cfg.num_layers, 2, cfg.hidden_size, dtype=dtype)
    example = (torch.zeros(2, cfg.input_size, dtype=dtype), state, state.clone())
    batch = torch.export.Dim("batch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(LSTMStep(model.eval()).eval(), example, str(path), dynamo=True,
                          opset_version=OPSET, input_names=list(STEP_INPUTS),
                          output_names=list(STEP_OUTPUTS),
                          dynamic_shapes=({0: batch}, {1: batch}, {1: batch}), external_data=False,
                          verbose=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--config-json", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--step", action="store_true", help="export the streaming step model")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="fp32",
                        help="weights, inputs and outputs in this dtype")
    args = parser.parse_args(argv)
    model = LSTMPredictor(ModelConfig(**json.loads(args.config_json)))
    model.load_state_dict(load_file(str(args.weights)))
    start = time.perf_counter()
    (export_step if args.step else export)(model, args.out, DTYPES[args.dtype])
    print(json.dumps({"export_s": time.perf_counter() - start}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
