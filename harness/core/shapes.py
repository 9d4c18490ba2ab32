"""Does a record read back from JSON have the shape its result dataclass gives it?

A results file can be made or edited by hand before it reaches ``report`` or ``compare``.
The dataclasses that write it (``harness.core.results``, and each workload's
``row_records``) already say what each key holds, so they are the schema: a value of the
wrong shape is refused in one line, not met as a traceback deep inside a table or a plot.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from collections.abc import Collection, Mapping
from enum import Enum
from typing import Any


def conforms(value: Any, annotation: Any) -> bool:
    """Whether ``value``, as JSON decodes it, fits ``annotation``: a float is any JSON number,
    an enum its values, a tuple or list a JSON array, a dataclass an object holding every
    field that has no default, a mapping any object."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, arm) for arm in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return value in [member.value for member in annotation]  # a list: value may not hash
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if (items := _fixed_items(annotation)) is not None:
        return (isinstance(value, list) and len(value) == len(items)
                and all(conforms(v, item) for v, item in zip(value, items, strict=True)))
    if origin in (list, tuple):
        item = typing.get_args(annotation)[0]
        return isinstance(value, list) and all(conforms(v, item) for v in value)
    if _is_mapping(annotation):
        return isinstance(value, dict)
    if dataclasses.is_dataclass(annotation):
        return isinstance(value, dict) and not mismatches(value, annotation,
                                                          required=required_keys(annotation))
    raise TypeError(f"no JSON shape for {annotation!r}")


def _fixed_items(annotation: Any) -> tuple[Any, ...] | None:
    """A fixed-length tuple's annotation per item (``tuple[int, int]``); None for any other
    annotation, ``tuple[int, ...]`` among them."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is tuple and args and args[-1] is not Ellipsis:
        return args
    return None


def _is_mapping(annotation: Any) -> bool:
    return annotation in (dict, Mapping) or typing.get_origin(annotation) in (dict, Mapping)


def unshaped(cls: type) -> list[str]:
    """The fields of dataclass ``cls`` whose annotation ``conforms`` cannot check a JSON
    value against (a set, a class of one's own, a bare ``list``)."""
    return [f"{name}: {annotation!r}" for name, annotation in _hints(cls).items()
            if not _has_shape(annotation)]


def _has_shape(annotation: Any) -> bool:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, list, tuple):
        # a list or tuple names its items (``conforms`` reads them), and ``tuple[()]`` none
        return bool(args) and all(_has_shape(arg) for arg in args if arg is not Ellipsis)
    if dataclasses.is_dataclass(annotation):
        return not unshaped(annotation)
    return (annotation in (Any, type(None), bool, int, float, str) or _is_mapping(annotation)
            or (isinstance(annotation, type) and issubclass(annotation, Enum)))


def required_keys(cls: type) -> tuple[str, ...]:
    """The fields of dataclass ``cls`` that have no default."""
    return tuple(f.name for f in dataclasses.fields(cls)
                 if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)


# A field's metadata may bound its value beyond its type: ``field(metadata=between(1))``.
BOUNDS = "bounds"
LARGEST_COUNT = 2**53  # beyond it a JSON number is no longer an exact integer everywhere


def between(low: float, high: float | None = None) -> dict[str, tuple[float, float | None]]:
    """Metadata for a number field that must lie in [low, high] (a list's every number), or a
    string field that must be at least ``low`` characters long."""
    return {BOUNDS: (low, high)}


COUNT = between(1, LARGEST_COUNT)  # a size or a count of things
NON_NEGATIVE = between(0)  # a time, a rate, an error


def _out_of_bounds(value: Any, bounds: tuple[float, float | None], annotation: Any) -> str | None:
    """What ``value`` was expected to be, where it is outside ``bounds``; None where it is in."""
    low, high = bounds
    if isinstance(value, str):
        return f"a string of {low} or more characters" if len(value) < low else None
    numbers = value if isinstance(value, list) else [value]
    if all(not _outside(v, low, high) for v in numbers):
        return None
    kind = "an integer" if int in (annotation, *typing.get_args(annotation)) else "a number"
    expected = f"from {low} to {high}" if high is not None else f">= {low}"
    return (f"a list of numbers {expected}" if isinstance(value, list) else f"{kind} {expected}")


def _outside(value: Any, low: float, high: float | None) -> bool:
    """Whether a number lies outside [low, high]; anything else (null, a list's null) is not
    a number to bound."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    return value != value or value < low or (high is not None and value > high)  # NaN too


def mismatches(record: Mapping, cls: type, *, required: Collection[str] = (),
               nullable: bool | Collection[str] = False) -> list[str]:
    """What in ``record`` does not fit dataclass ``cls``: one phrase per key, naming what was
    expected and what arrived. Keys ``cls`` does not know are not judged, absent keys only
    where ``required`` names them; null fits where the annotation allows it, and for the keys
    ``nullable`` names (True: every key)."""
    wrong = []
    bounds = _bounds(cls)
    for name, annotation in _hints(cls).items():
        if name not in record:
            if name in required:
                wrong.append(f"{name} as {_described(annotation)}, absent")
        elif record[name] is None and (nullable is True or name in (nullable or ())):
            continue
        elif not conforms(record[name], annotation):
            wrong.append(f"{name} as {_described(annotation)}, got {arrived(record[name])}")
        elif name in bounds and (expected := _out_of_bounds(record[name], bounds[name], annotation)):
            wrong.append(f"{name} as {expected}, got {arrived(record[name])}")
    return wrong


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """Field name -> its annotation, resolved once per dataclass (a file has many rows)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


@functools.cache
def _bounds(cls: type) -> dict[str, tuple[float, float | None]]:
    return {f.name: f.metadata[BOUNDS] for f in dataclasses.fields(cls) if BOUNDS in f.metadata}


_JSON_NAMES = {bool: "true or false", int: "integer", float: "number", str: "string",
               type(None): "null"}


def _described(annotation: Any) -> str:
    """``annotation`` in JSON's terms: ``[number, ...]``, ``{pid, name, cores}``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_described(arm) for arm in typing.get_args(annotation))
    if (items := _fixed_items(annotation)) is not None:
        return "[" + ", ".join(_described(item) for item in items) + "]"
    if origin in (list, tuple):
        return f"[{_described(typing.get_args(annotation)[0])}, ...]"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return "one of " + ", ".join(json.dumps(member.value) for member in annotation)
    if dataclasses.is_dataclass(annotation):
        return "{" + ", ".join(required_keys(annotation)) + "}"
    if _is_mapping(annotation):
        return "object"
    return _JSON_NAMES.get(annotation, "anything")


def arrived(value: Any) -> str:
    """``value`` as the file holds it, cut short: ``"fast"``, ``[1, "x"]``, ``null``."""
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."
