"""User scenarios from TOML files, parsed with stdlib tomllib and checked key by key.

Every wrong key, type or value raises InputError naming the file, the key and what is
allowed, so a typo in a scenario never silently falls back to a default. Keys beyond the
scenario's own are the settings of its workload (a rollout's ``horizon``), checked against
that workload's declaration.

``[[models]]`` tables name the models a scenario covers, run one after the other: either
``checkpoint = "path"`` (relative to the TOML file's folder), or the sizes the harness trains
(``input_size``, ``hidden_size``, ``num_layers``, ``output_size``; each 1, 64, 1, 1 unless
given) with ``epochs`` (0: the seeded initial weights, untrained) and ``seed``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.core.checkpoint import ModelSource
from harness.core.errors import InputError
from harness.core.model import ModelConfig
from harness.core.targets import DEFAULT_MODE, DTYPES
from harness.core.timing import MAX_PROCESSES
from harness.core.training import TrainConfig
from harness.workloads import WORKLOADS
from harness.workloads.base import (
    SettingError,
    Workload,
    make_workload,
    non_negative_number,
    positive_number,
    settings_of,
)
from scenarios import FOCUSES, PRESETS, SCENARIO_DEVICES, Scenario


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _choice(allowed: tuple[str, ...]) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v in allowed), f"one of {', '.join(repr(a) for a in allowed)}"


def _list_of(check: Callable[[Any], bool], what: str) -> tuple[Callable[[Any], bool], str]:
    def ok(v: Any) -> bool:
        return isinstance(v, list) and len(v) > 0 and all(check(x) for x in v) and \
            len({repr(x) for x in v}) == len(v)
    return ok, f"a non-empty list of {what}, each once"


_POSITIVE_INTS = _list_of(lambda x: _is_int(x) and x >= 1, "integers >= 1")


def _scalars(workloads: Mapping[str, type[Workload]]) -> dict[str, tuple[Callable[[Any], bool], str]]:
    """key -> (is the value allowed?, what is allowed, in words)"""
    return {
        "name": ((lambda v: isinstance(v, str) and v.strip() != ""), "a non-empty string"),
        "extends": _choice(tuple(PRESETS)),
        "description": ((lambda v: isinstance(v, str)), "a string"),
        "mode": _choice(tuple(workloads)),
        "focus": _choice(FOCUSES),
        "batch_sizes": _POSITIVE_INTS,
        "seq_lens": _POSITIVE_INTS,
        "dtypes": _list_of(lambda x: x in DTYPES, f"{', '.join(map(repr, DTYPES))}"),
        "devices": _list_of(lambda x: x in SCENARIO_DEVICES, f"{', '.join(map(repr, SCENARIO_DEVICES))}"),
        "backends": _list_of(lambda x: isinstance(x, str) and x.strip() != "", "backend names"),
        "budget_s": (positive_number, "a number > 0"),
        "processes": ((lambda v: _is_int(v) and 1 <= v <= MAX_PROCESSES),
                      f"an integer from 1 to {MAX_PROCESSES}"),
    }


_TOLERANCE_KEYS = ("atol", "rtol")
_SIZE_KEYS = tuple(ModelConfig().to_dict())  # input_size, hidden_size, num_layers, output_size
_TRAIN_KEYS = {"epochs": ((lambda v: _is_int(v) and v >= 0), "an integer >= 0 (0: seeded weights)"),
               "seed": (_is_int, "an integer")}


def _model(path: Path, key: str, entry: Any) -> ModelSource:
    if not isinstance(entry, dict) or not entry:
        raise _fail(path, key, "a table with a 'checkpoint' path or model sizes", entry)
    if "checkpoint" in entry:
        if set(entry) != {"checkpoint"}:
            raise _fail(path, key, "either a 'checkpoint' path alone or model sizes, not both",
                        sorted(entry))
        value = entry["checkpoint"]
        if not isinstance(value, str) or not value.strip():
            raise _fail(path, f"{key}.checkpoint", "a path to a checkpoint file", value)
        return path.parent / Path(value).expanduser()
    allowed = (*_SIZE_KEYS, *_TRAIN_KEYS)
    for name, value in entry.items():
        if name not in allowed:
            raise InputError(f"{path}: unknown key {f'{key}.{name}'!r}; a model is 'checkpoint', "
                             f"or any of {', '.join(allowed)}")
        ok, expected = _TRAIN_KEYS.get(name, ((lambda v: _is_int(v) and v >= 1), "an integer >= 1"))
        if not ok(value):
            raise _fail(path, f"{key}.{name}", expected, value)
    sizes = {k: v for k, v in entry.items() if k in _SIZE_KEYS}
    train = {k: v for k, v in entry.items() if k in _TRAIN_KEYS}
    return TrainConfig(model=ModelConfig(**sizes), **train)


def _models(path: Path, value: Any) -> tuple[ModelSource, ...]:
    if not isinstance(value, list) or not value:
        raise _fail(path, "models", "a non-empty array of [[models]] tables", value)
    return tuple(_model(path, f"models[{i}]", entry) for i, entry in enumerate(value))


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
            if not non_negative_number(tol[name]):
                raise _fail(path, f"{key}.{name}", "a number >= 0", tol[name])
        out.append((dtype, float(tol["atol"]), float(tol["rtol"])))
    return tuple(out)


def parse(path: Path, data: dict, workloads: Mapping[str, type[Workload]] = WORKLOADS) -> Scenario:
    scalars = _scalars(workloads)
    fields: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in data.items():
        if key == "tolerances":
            fields[key] = _tolerances(path, value)
        elif key == "models":
            fields[key] = _models(path, value)
        elif key in scalars:
            ok, expected = scalars[key]
            if not ok(value):
                raise _fail(path, key, expected, value)
            fields[key] = tuple(value) if isinstance(value, list) else value
        else:
            extra[key] = value
    base = PRESETS[fields.pop("extends")] if "extends" in fields else None
    mode = fields.get("mode", base.mode if base else DEFAULT_MODE)
    workload = workloads[mode]
    unknown = [k for k in extra if k not in settings_of(workload)]
    if unknown:
        settings = ", ".join(settings_of(workload)) or "none"
        raise InputError(f"{path}: unknown key {unknown[0]!r}; allowed keys are "
                         f"{', '.join((*scalars, 'tolerances', 'models'))}, and mode {mode!r}'s "
                         f"settings ({settings})")
    try:
        make_workload(workload, extra)
    except SettingError as exc:
        raise _fail(path, exc.key, exc.expected, exc.got) from None
    fields.setdefault("name", path.stem)
    if "budget_s" in fields:
        fields["budget_s"] = float(fields["budget_s"])
    # A file that changes the mode starts that workload's settings afresh.
    inherited = dict(base.params) if base and base.mode == mode else {}
    fields["params"] = tuple({**inherited, **extra}.items())
    fields["source"] = str(path)
    return replace(base, **fields) if base else Scenario(**fields)


def load(path: Path, workloads: Mapping[str, type[Workload]] = WORKLOADS) -> Scenario:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise InputError(f"expected a scenario TOML file, but {path} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"expected a scenario TOML file, got {path}, which is a directory") from None
    except OSError as exc:
        raise InputError(f"expected a readable scenario TOML file, got {path}: "
                         f"{exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"expected a scenario TOML file, {path} is not UTF-8 text: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        bom = path.read_bytes().startswith(b"\xef\xbb\xbf")
        hint = " (the file starts with a byte-order mark, which TOML does not allow)" if bom else ""
        raise InputError(f"{path}: not valid TOML{hint}: {exc}") from None
    return parse(path, data, workloads)
