"""User scenarios from TOML files, parsed with stdlib tomllib and checked key by key.

Every wrong key, type or value raises InputError naming the file, the key and what is
allowed, so a typo in a scenario never silently falls back to a default.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.errors import InputError
from scenarios import DEVICES, DTYPES, FOCUSES, MODES, PRESETS, Scenario


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _choice(allowed: tuple[str, ...]) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v in allowed), f"one of {', '.join(repr(a) for a in allowed)}"


def _list_of(check: Callable[[Any], bool], what: str) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: isinstance(v, list) and len(v) > 0 and all(check(x) for x in v)), \
        f"a non-empty list of {what}"


_POSITIVE_INTS = _list_of(lambda x: _is_int(x) and x >= 1, "integers >= 1")
# key -> (is the value allowed?, what is allowed, in words)
_SCALARS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "name": ((lambda v: isinstance(v, str) and v.strip() != ""), "a non-empty string"),
    "extends": _choice(tuple(PRESETS)),
    "description": ((lambda v: isinstance(v, str)), "a string"),
    "mode": _choice(MODES),
    "focus": _choice(FOCUSES),
    "batch_sizes": _POSITIVE_INTS,
    "seq_lens": _POSITIVE_INTS,
    "dtypes": _list_of(lambda x: x in DTYPES, f"{', '.join(map(repr, DTYPES))}"),
    "devices": _list_of(lambda x: x in DEVICES, f"{', '.join(map(repr, DEVICES))}"),
    "backends": _list_of(lambda x: isinstance(x, str) and x.strip() != "", "backend names"),
    "budget_s": ((lambda v: _is_number(v) and v > 0), "a number > 0"),
    "horizon": ((lambda v: _is_int(v) and v >= 1), "an integer >= 1"),
}
_TOLERANCE_KEYS = ("atol", "rtol")
ALLOWED_KEYS = (*_SCALARS, "tolerances")


def _fail(path: Path, key: str, expected: str, got: Any) -> InputError:
    return InputError(f"{path}: key {key!r} must be {expected}, got {got!r}")


def _tolerances(path: Path, table: Any) -> tuple[tuple[str, float, float], ...]:
    if not isinstance(table, dict):
        raise _fail(path, "tolerances", "a table of [tolerances.<dtype>] tables", table)
    out = []
    for dtype, tol in table.items():
        key = f"tolerances.{dtype}"
        if dtype not in DTYPES:
            raise _fail(path, key, f"keyed by a dtype, one of {', '.join(map(repr, DTYPES))}", dtype)
        if not isinstance(tol, dict) or set(tol) != set(_TOLERANCE_KEYS):
            raise _fail(path, key, "a table with exactly the keys 'atol' and 'rtol'", tol)
        for name in _TOLERANCE_KEYS:
            if not (_is_number(tol[name]) and tol[name] >= 0):
                raise _fail(path, f"{key}.{name}", "a number >= 0", tol[name])
        out.append((dtype, float(tol["atol"]), float(tol["rtol"])))
    return tuple(out)


def parse(path: Path, data: dict) -> Scenario:
    unknown = [k for k in data if k not in ALLOWED_KEYS]
    if unknown:
        raise InputError(f"{path}: unknown key {unknown[0]!r}; allowed keys are "
                         f"{', '.join(ALLOWED_KEYS)}")
    fields: dict[str, Any] = {}
    for key, value in data.items():
        if key == "tolerances":
            fields[key] = _tolerances(path, value)
            continue
        ok, expected = _SCALARS[key]
        if not ok(value):
            raise _fail(path, key, expected, value)
        fields[key] = tuple(value) if isinstance(value, list) else value
    base = PRESETS[fields.pop("extends")] if "extends" in fields else None
    fields.setdefault("name", path.stem)
    if "budget_s" in fields:
        fields["budget_s"] = float(fields["budget_s"])
    return replace(base, **fields) if base else Scenario(**fields)


def load(path: Path) -> Scenario:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise InputError(f"expected a scenario TOML file, but {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML: {exc}") from None
    return parse(path, data)
