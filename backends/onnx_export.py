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
from typing import Any

import torch
from safetensors.torch import load_file

from harness.core.model import LSTMPredictor, LSTMStep, ModelConfig

OPSET = 18
STEP_INPUTS = ("x", "h", "c")
STEP_OUTPUTS = ("y", "h_out", "c_out")


DTYPES = {"fp32": torch.float32, "fp16": torch.float16}
EXPORTERS = ("auto", "dynamo", "torchscript")


# Axis -> name of each dynamic dimension, per input and per output.
Axes = tuple[dict[int, str], ...]
WINDOW_DYNAMIC: tuple[Axes, Axes] = (({0: "batch", 1: "seq_len"},), ({0: "batch"},))
STEP_DYNAMIC: tuple[Axes, Axes] = (({0: "batch"}, {1: "batch"}, {1: "batch"}),) * 2


def fixed_axes(onnx_model: Any, dynamic: Axes) -> list[tuple[str, int]]:
    """(input, axis) pairs of a loaded ONNX model that were meant to be dynamic but were
    written with a fixed size."""
    inputs = onnx_model.graph.input
    return [(inp.name, axis) for inp, axes in zip(inputs, dynamic, strict=True) for axis in axes
            if not inp.type.tensor_type.shape.dim[axis].dim_param]


def fixed_axes_in_file(path: Path, dynamic: Axes) -> list[tuple[str, int]]:
    import onnx

    return fixed_axes(onnx.load(str(path), load_external_data=False), dynamic)


def _export_with(exporter: str, module: torch.nn.Module, example: tuple[torch.Tensor, ...],
                 path: Path, names: tuple[tuple[str, ...], tuple[str, ...]],
                 dynamic: tuple[Axes, Axes]) -> None:
    inputs, outputs = names
    dynamic_inputs, dynamic_outputs = dynamic
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            dims = {label: torch.export.Dim(label) for axes in dynamic_inputs for label in axes.values()}
            shapes = tuple({axis: dims[label] for axis, label in axes.items()} for axes in dynamic_inputs)
            torch.onnx.export(module, example, str(path), dynamo=True, opset_version=OPSET,
                              input_names=list(inputs), output_names=list(outputs),
                              dynamic_shapes=shapes, external_data=False, verbose=False)
        else:
            torch.onnx.export(module, example, str(path), dynamo=False, opset_version=OPSET,
                              input_names=list(inputs), output_names=list(outputs),
                              dynamic_axes={**dict(zip(inputs, dynamic_inputs, strict=True)),
                                            **dict(zip(outputs, dynamic_outputs, strict=True))})


def export_module(module: torch.nn.Module, example: tuple[torch.Tensor, ...], path: Path,
                  names: tuple[tuple[str, ...], tuple[str, ...]],
                  dynamic: tuple[Axes, Axes], exporter: str = "auto") -> str:
    """Write ``module`` to ``path`` with the ``dynamic`` axes symbolic; returns the exporter used.

    ``auto`` takes the dynamo exporter, and falls back to the TorchScript one only when dynamo
    wrote a dynamic axis as fixed. Seen with torch 2.11 on the GPU machine: its dynamo exporter
    fixed seq_len to the example's length without an error, and ONNX Runtime would then refuse
    every other length. The TorchScript exporter emits one ONNX LSTM node with seq_len free.
    """
    first = "torchscript" if exporter == "torchscript" else "dynamo"
    _export_with(first, module, example, path, names, dynamic)
    fixed = fixed_axes_in_file(path, dynamic[0]) if exporter == "auto" else []
    if fixed:
        _export_with("torchscript", module, example, path, names, dynamic)
        return f"torchscript (dynamo fixed {', '.join(f'{n}[{a}]' for n, a in fixed)})"
    return first


def export(model: LSTMPredictor, path: Path, dtype: torch.dtype = torch.float32,
           exporter: str = "auto") -> str:
    model = model.to(dtype).eval()
    example = (torch.zeros(2, 8, model.config.input_size, dtype=dtype),)
    return export_module(model, example, path, (("x",), ("y",)), WINDOW_DYNAMIC, exporter)


def export_step(model: LSTMPredictor, path: Path, dtype: torch.dtype = torch.float32,
                exporter: str = "auto") -> str:
    cfg = model.config
    model = model.to(dtype).eval()
    state = torch.zeros(cfg.num_layers, 2, cfg.hidden_size, dtype=dtype)
    example = (torch.zeros(2, cfg.input_size, dtype=dtype), state, state.clone())
    return export_module(LSTMStep(model).eval(), example, path, (STEP_INPUTS, STEP_OUTPUTS),
                         STEP_DYNAMIC, exporter)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--config-json", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--step", action="store_true", help="export the streaming step model")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="fp32",
                        help="weights, inputs and outputs in this dtype")
    parser.add_argument("--exporter", choices=EXPORTERS, default="auto",
                        help="auto: dynamo, or TorchScript where dynamo fixed a dynamic axis")
    args = parser.parse_args(argv)
    model = LSTMPredictor(ModelConfig(**json.loads(args.config_json)))
    model.load_state_dict(load_file(str(args.weights)))
    start = time.perf_counter()
    exporter = (export_step if args.step else export)(model, args.out, DTYPES[args.dtype],
                                                      args.exporter)
    print(json.dumps({"export_s": time.perf_counter() - start, "exporter": exporter}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
