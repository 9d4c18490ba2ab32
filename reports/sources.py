"""Reading a results file of either format the harness understands."""

from __future__ import annotations

from pathlib import Path

from harness.errors import InputError
from harness.results import SCHEMA_VERSION
from reports.jsonio import read_json


def is_pytest_benchmark(data: dict) -> bool:
    """pytest-benchmark's --benchmark-json files carry these two top-level keys."""
    return isinstance(data, dict) and "benchmarks" in data and "machine_info" in data


def as_results(data: object, origin: str) -> dict:
    """A harness results dict from parsed JSON, converting pytest-benchmark files."""
    if is_pytest_benchmark(data):
        # Imported here: the converter itself uses is_pytest_benchmark from this module.
        from reports.pytest_benchmark import from_pytest_benchmark

        data = from_pytest_benchmark(data)
    if not isinstance(data, dict) or "rows" not in data or "schema_version" not in data:
        raise InputError(f"expected a harness results file (keys schema_version and rows) or a "
                         f"pytest-benchmark JSON file, got something else in {origin}")
    version = data["schema_version"]
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise InputError(f"expected results schema_version <= {SCHEMA_VERSION}, got {version!r} "
                         f"in {origin}; upgrade lstm-harness to read it")
    return data


def load_results(path: Path) -> dict:
    return as_results(read_json(path), str(path))
