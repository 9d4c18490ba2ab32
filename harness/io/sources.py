"""Reading a results file of either format the harness understands, at today's schema."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path

from harness.core.errors import InputError
from harness.core.results import (
    ROW_KEYS,
    ROW_PARTS,
    SCHEMA_VERSION,
    Check,
    Identity,
    Outcome,
    RunVerdict,
)
from harness.core.shapes import arrived, mismatches
from harness.core.targets import DEFAULT_MODE
from harness.io.jsonio import read_json
from harness.io.pytest_benchmark import from_pytest_benchmark, is_pytest_benchmark
from harness.workloads import WORKLOADS, row_records
from harness.workloads.base import Workload

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
        rows.append({**row, "diagnostics": diagnostics})
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
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InputError(f"expected results schema_version as an integer from 1 to {SCHEMA_VERSION}, "
                         f"got {arrived(version)} in {origin}")
    if version > SCHEMA_VERSION:
        raise InputError(f"expected results schema_version <= {SCHEMA_VERSION}, got {arrived(version)} in "
                         f"{origin}; upgrade lstm-harness to read it")
    while data["schema_version"] < SCHEMA_VERSION:
        data = MIGRATIONS[data["schema_version"]](data)
    return data


# What a report or a comparison needs of every row and check to place it: its backend and
# shape; and the checks table's figures, on every check of every version.
ROW_IDENTITY = ("backend", "device", "dtype", "batch_size", "seq_len")
CHECK_REQUIRED = ("backend", "batch_size", "seq_len", "max_abs_err", "max_rel_err", "agrees")
# The blocks around the rows; a file may lack one, and a run that timed nothing has a null verdict.
BLOCKS = ("environment", "scenario", "model", "tolerance")
# The keys every version's verdict carried, and those a verdict that judged the host added.
VERDICT_KEYS = ("verdict", "rows_contended", "max_foreign_cores", "max_set_aside")
CANARY_KEYS = ("max_canary_spread", "canary_spread", "canary_rounds")
# A row's absent keys read as null, as in a row that did not record them; one that names no
# mode was timed forward, as every row before modes was. Of its identity, what places it
# and its mode must be there; the model's sizes and the like may be null, as where absent.
ROW_DEFAULTS = {**dict.fromkeys(ROW_KEYS), "mode": DEFAULT_MODE}
IDENTITY_NULLABLE = frozenset(f.name for f in fields(Identity)) - {*ROW_IDENTITY, "mode"}
# A check's errors are null where they were NaN (JSON has none).
CHECK_NULLABLE = ("max_abs_err", "max_rel_err")


def _containers(data: dict, origin: str) -> None:
    """The rows and checks are lists of objects, the blocks around them objects, and so are
    the model block's parts, which the migrations read."""
    model = data.get("model")
    lists = {"rows": data.get("rows"), "checks": data.get("checks", [])}
    objects = {key: data.get(key, {}) for key in BLOCKS}
    nullable = {"verdict": data.get("verdict")}  # null: no row was timed
    if isinstance(model, dict):
        lists["model.models"] = model.get("models", [])
        nullable["model.config"] = model.get("config")
    for what, value in lists.items():
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise InputError(f"expected {what} to be a list of objects in {origin}, got "
                             f"{arrived(value)}")
    for what, value in {**objects, **{k: v for k, v in nullable.items() if v is not None}}.items():
        if not isinstance(value, dict):
            raise InputError(f"expected {what} to be an object in {origin}, got {arrived(value)}")


def _refuse(what: str, origin: str, wrong: list[str]) -> None:
    if wrong:
        raise InputError(f"expected {what} of {origin} to carry {'; '.join(wrong)}")


def _placed(data: dict, origin: str, workloads: Mapping[str, type[Workload]]) -> dict:
    """``data`` once every row names its backend and shape, and every record holds what its
    dataclass says (a row's figures may be null, as where they were not measured, and a
    check's all but what places it; a row's own fields are its mode's ``row_records``),
    with a row's absent keys filled in (``ROW_DEFAULTS``)."""
    rows, checks = data["rows"], data.get("checks", [])
    for index, row in enumerate(rows):
        mode = row.get("mode") if isinstance(row.get("mode"), str) else DEFAULT_MODE
        _refuse(f"row {index}", origin, [
            *mismatches(row, Identity, required=ROW_IDENTITY, nullable=IDENTITY_NULLABLE),
            *mismatches(row, Outcome, required=("status",)),
            *(wrong for part in (*ROW_PARTS, *row_records(mode, workloads))
              if part not in (Identity, Outcome)
              for wrong in mismatches(row, part, nullable=True)),
            *([] if isinstance(row.get("diagnostics", {}), dict | None)
              else [f"diagnostics as object, got {arrived(row['diagnostics'])}"])])
    for index, check in enumerate(checks):
        _refuse(f"check {index}", origin, mismatches(
            check, Check, required=CHECK_REQUIRED, nullable=CHECK_NULLABLE))
    verdict = data.get("verdict")
    if verdict is not None:
        canary = CANARY_KEYS if any(key in verdict for key in CANARY_KEYS) else ()
        _refuse("the verdict", origin,
                mismatches(verdict, RunVerdict, required=(*VERDICT_KEYS, *canary)))
    return {**data, "rows": [{**ROW_DEFAULTS, **row} for row in rows]}


def as_results(data: object, origin: str,
               workloads: Mapping[str, type[Workload]] = WORKLOADS) -> dict:
    """A harness results dict from parsed JSON, converting pytest-benchmark files; rows of
    ``workloads``' modes are held to their own fields' dataclasses."""
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
    _containers(data, origin)
    return _placed(migrate(data, origin), origin, workloads)


def load_results(path: Path, workloads: Mapping[str, type[Workload]] = WORKLOADS) -> dict:
    return as_results(read_json(path), str(path), workloads)
