"""Reading the weights a user saved, without running anything in the file.

Two formats are read: what ``torch.save(model.state_dict(), path)`` writes, loaded with
``torch.load(weights_only=True)`` (torch's restricted unpickler, which rebuilds tensors and
plain containers and refuses every other class before importing it), and safetensors. The
format is told by the file's first bytes, not its name. A whole pickled module is refused
with the line that tells the user how to save its state_dict instead.
"""

from __future__ import annotations

import pickle
import pickletools
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from harness.core.errors import CheckpointError

ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default (zip) format
PICKLE_PROTO = 0x80  # torch.save's legacy format starts with a pickle
TORCH, SAFETENSORS = "torch", "safetensors"
SAVE_STATE_DICT = "torch.save(model.state_dict(), path)"


def sniff(path: Path) -> str | None:
    """``torch``, ``safetensors``, or None when the first bytes are neither."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(ZIP_MAGIC) or (head and head[0] == PICKLE_PROTO):
        return TORCH
    # safetensors: an 8-byte little-endian header length, then the JSON header itself.
    if len(head) > 8 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") > 1:
        return SAFETENSORS
    return None


def pickled_class(path: Path) -> str | None:
    """The first class a torch.save zip's pickle names beyond torch's own and plain
    containers (``__main__.LSTMPredictor`` for a whole module), read as opcodes: nothing is
    imported or run."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
            data = archive.read(name)
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name == "GLOBAL" and isinstance(arg, str):
                module, _, qualname = arg.partition(" ")
                if module.split(".")[0] not in ("torch", "collections", "__builtin__", "builtins"):
                    return f"{module}.{qualname}"
    except (zipfile.BadZipFile, StopIteration, ValueError, OSError, KeyError):
        pass
    return None


def require_file(path: Path) -> None:
    """CheckpointError unless ``path`` is a file."""
    if not path.is_file():
        state = ("is a directory" if path.is_dir() else "is not a regular file" if path.exists()
                 else "does not exist")
        raise CheckpointError(f"expected a checkpoint file, got {path}, which {state}")


def read_tensors(path: Path) -> tuple[dict[str, object], str]:
    """The file's top-level mapping (name -> value, tensors on the CPU) and its format.

    Raises CheckpointError, one line, for a file that is missing, unreadable, in neither
    format, or a pickle of anything but tensors and plain containers."""
    require_file(path)
    kind = sniff(path)
    if kind == SAFETENSORS:
        try:
            return dict(load_file(str(path))), SAFETENSORS
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path} is not a readable safetensors file (truncated or "
                                  f"corrupt?): {_first_line(exc)}") from None
    if kind != TORCH:
        raise CheckpointError(f"expected a state_dict saved with {SAVE_STATE_DICT} or a "
                              f"safetensors file, got {path}, which is neither")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        cls = pickled_class(path)
        what = f"a pickled {cls} object" if cls else "pickled objects other than tensors"
        raise CheckpointError(
            f"{path} holds {what}, not a state_dict: only unpickling, which runs code from the "
            f"file, could load it, and the harness refuses to; save the weights instead with "
            f"{SAVE_STATE_DICT}") from None
    except (RuntimeError, OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path} is not a readable torch.save file (truncated or "
                              f"corrupt?): {_first_line(exc)}") from None
    if not isinstance(loaded, dict):
        raise CheckpointError(f"expected {path} to hold a state_dict (a dict of tensors, as "
                              f"{SAVE_STATE_DICT} writes), got a {type(loaded).__name__}")
    return dict(loaded), TORCH


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
