"""Results as JSON files, written atomically (temporary file, then rename)."""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from pathlib import Path

from harness.core.errors import InputError
from harness.core.shapes import arrived


def json_safe(value):
    """JSON has no NaN or Infinity: they become null, wherever results are written (a file,
    the history), so every copy of a run reads back the same."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def write_json(path: Path, data: dict) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # a short name of its own: one built from a long target's would pass the limit first
        fd, tmp = tempfile.mkstemp(prefix=".lstm-harness-", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise InputError(f"cannot write results to {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(json_safe(data), f, indent=2, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _finite_numbers(path: Path) -> dict:
    """``json.loads`` hooks that refuse what no results file holds: NaN and Infinity, which
    Python reads though JSON has neither, and a number too large for a float."""
    def refuse(text: str) -> float:
        raise InputError(f"expected a JSON results file, whose numbers are finite, got "
                         f"{arrived(float(text))} in {path}")

    def finite(text: str) -> float:
        value = float(text)
        return value if math.isfinite(value) else refuse(text)
    return {"parse_constant": refuse, "parse_float": finite}


def read_json(path: Path) -> dict:
    path = Path(path)
    try:
        if path.exists() and not path.is_file():  # a folder, a device, a pipe: nothing to read whole
            raise InputError(f"expected a readable JSON results file, got {path}, which is not a "
                             "regular file")
        return json.loads(path.read_text(encoding="utf-8"), **_finite_numbers(path))
    except InputError:  # a number the hooks refused
        raise
    except RecursionError:
        raise InputError(f"expected a JSON results file, {path} nests deeper than any "
                         "results file does") from None
    except FileNotFoundError as exc:
        raise InputError(f"results file not found: {path}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"expected a JSON results file, {path} is not UTF-8 text: {exc}") from exc
    except OSError as exc:
        raise InputError(f"expected a readable JSON results file, got {path}: "
                         f"{exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"expected a JSON results file, {path} is not valid JSON: {exc}") from exc
    except ValueError:  # an integer of more digits than Python converts
        raise InputError(f"expected a JSON results file, {path} holds an integer of more than "
                         f"{sys.get_int_max_str_digits()} digits") from None
