"""Reading a results file of either format the harness understands, at today's schema."""

from __future__ import annotations

from pathlib import Path

from harness.core.errors import InputError
from harness.core.results import ROW_KEYS, SCHEMA_VERSION
from harness.io.jsonio import read_json
from harness.io.pytest_benchmark import from_pytest_benchmark, is_pytest_benchmark

# Version 1 kept these backend facts as top-level row keys (and dropped the others).
_V1_DIAGNOSTICS = ("graphs", "graph_breaks", "recompiles", "artifact_bytes", "exporter")


def _v1_to_v2(data: dict) -> dict:
    """Backend facts move under each row's ``diagnostics``; ONNX Runtime's providers move
    from the environment's ``ort_providers`` to its ``backends`` block."""
    rows = []
    for row in data["rows"]:
        row = dict(row)
        diagnostics = {k: row.pop(k) for k in _V1_DIAGNOSTICS if row.get(k) is not None}
        for key in _V1_DIAGNOSTICS:
            row.pop(key, None)
        rows.append({**dict.fromkeys(ROW_KEYS), **row, "diagnostics": diagnostics})
    environment = dict(data.get("environment") or {})
    providers = environment.pop("ort_providers", None)
    if providers is not None:
        environment["backends"] = {"onnxruntime": {"providers": providers}}
    return {**data, "environment": environment, "rows": rows, "schema_version": 2}


def _v2_to_v3(data: dict) -> dict:
    """Every row and check names its model: a version 2 file covered one, recorded in its
    ``model`` block (``weights_sha256``, ``config``), which each row and check now carries."""
    model = data.get("model") or {}
    config = model.get("config") or {}
    identity = {"model_sha256": model.get("weights_sha256"),
                **{k: config.get(k, default) for k, default in
                   (("input_size", 1), ("hidden_size", 64), ("num_layers", 1), ("output_size", 1))}}
    rows = [{**row, **{k: v for k, v in identity.items() if row.get(k) is None}}
            for row in data["rows"]]
    checks = [{**check, "model_sha256": check.get("model_sha256") or identity["model_sha256"]}
              for check in data.get("checks", [])]
    return {**data, "rows": rows, "checks": checks, "schema_version": 3}


def _v3_to_v4(data: dict) -> dict:
    """The canary ran on one thread until version 4, which records how many it ran on: a
    verdict that judged its canary gets ``canary_threads`` 1."""
    verdict = data.get("verdict")
    if verdict and "canary_spread" in verdict and verdict.get("canary_threads") is None:
        data = {**data, "verdict": {**verdict, "canary_threads": 1}}
    return {**data, "schema_version": 4}


MIGRATIONS = {1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4}  # version -> the function that lifts it by one


def migrate(data: dict, origin: str) -> dict:
    """``data`` lifted to SCHEMA_VERSION, one version at a time."""
    version = data["schema_version"]
    if not isinstance(version, int) or not 1 <= version <= SCHEMA_VERSION:
        raise InputError(f"expected results schema_version <= {SCHEMA_VERSION}, got {version!r} "
                         f"in {origin}; upgrade lstm-harness to read it")
    while data["schema_version"] < SCHEMA_VERSION:
        data = MIGRATIONS[data["schema_version"]](data)
    return data


# What a report or a comparison needs of every row to place it: its backend and shape.
ROW_IDENTITY = {"backend": str, "device": str, "dtype": str, "batch_size": int, "seq_len": int,
                "status": str}
CHECK_IDENTITY = {"backend": str, "batch_size": int, "seq_len": int}


def _lists_of_objects(data: dict, origin: str) -> None:
    for key in ("rows", "checks"):
        items = data.get(key, [])
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise InputError(f"expected {key} to be a list of objects in {origin}, got "
                             f"{type(items).__name__} {str(items)[:60]}")


def _placed(data: dict, origin: str) -> dict:
    """``data`` once every row names its backend and shape; a row's absent figures are null,
    as a row that did not record them says."""
    rows = data["rows"]
    for kind_of_item, items, identity in (("row", rows, ROW_IDENTITY),
                                          ("check", data.get("checks", []), CHECK_IDENTITY)):
        for index, item in enumerate(items):
            wrong = [f"{key} ({kind.__name__})" for key, kind in identity.items()
                     if not isinstance(item.get(key), kind)]
            if wrong:
                raise InputError(f"expected every {kind_of_item} to carry {', '.join(wrong)}; "
                                 f"{kind_of_item} {index} of {origin} has "
                                 f"{', '.join(f'{k}={item.get(k)!r}' for k in identity)}")
    return {**data, "rows": [{**dict.fromkeys(ROW_KEYS), **row} for row in rows]}


def as_results(data: object, origin: str) -> dict:
    """A harness results dict from parsed JSON, converting pytest-benchmark files."""
    if is_pytest_benchmark(data):
        try:
            data = from_pytest_benchmark(data)
        except InputError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"expected a pytest-benchmark file of the harness's benchmark suite "
                             f"(every benchmark's extra_info naming its backend and shape); "
                             f"{origin} is not one ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict) or "rows" not in data or "schema_version" not in data:
        raise InputError(f"expected a harness results file (keys schema_version and rows) or a "
                         f"pytest-benchmark JSON file, got something else in {origin}")
    _lists_of_objects(data, origin)
    return _placed(migrate(data, origin), origin)


def load_results(path: Path) -> dict:
    return as_results(read_json(path), str(path))
