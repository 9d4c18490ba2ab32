"""Read a pytest-benchmark JSON file (from ``tests/benchmarks``) as a harness results dict.

The benchmarks store what the harness knows (backend, shape, agreement, preparation time,
threads) in each benchmark's ``extra_info`` and the harness's environment in
``machine_info["lstm_harness"]``; this module maps that, plus pytest-benchmark's own
statistics, onto the shape of ``harness.core.results.RunResult.to_dict()``, so
``reports.table.results_table`` renders it like a harness run.
"""

from __future__ import annotations

from dataclasses import asdict

from harness.core.errors import InputError
from harness.core.model import ModelConfig
from harness.core.results import (
    SCHEMA_VERSION,
    Check,
    ColdStart,
    Identity,
    Row,
    RowAgreement,
    TimingSummary,
)
from harness.core.stats import is_noisy, summarize
from harness.workloads.forward import forward_fields

REQUIRED = ("backend", "device", "dtype", "batch_size", "seq_len")


def is_pytest_benchmark(data: object) -> bool:
    """pytest-benchmark's --benchmark-json files carry these two top-level keys."""
    return isinstance(data, dict) and "benchmarks" in data and "machine_info" in data


def _row(bench: dict) -> Row:
    info = bench.get("extra_info") or {}
    missing = [key for key in REQUIRED if key not in info]
    if missing:
        raise InputError(f"expected a pytest-benchmark file from tests/benchmarks, whose "
                         f"extra_info names {', '.join(REQUIRED)}; benchmark "
                         f"{bench.get('name', '?')!r} lacks {', '.join(missing)}")
    stats = bench["stats"]
    ms = 1e3
    median_s = stats["median"]
    # Raw per-round times are in --benchmark-json files and in saves made with
    # --benchmark-save-data; without them the tail percentiles cannot be recovered.
    data = stats.get("data") or []
    summary = summarize(data) if data else None
    identity = Identity(info["backend"], info["device"], info["dtype"], info["batch_size"],
                        info["seq_len"], scenario=info.get("scenario", "default"),
                        **_model_identity(info))
    timing = TimingSummary(
        median_ms=median_s * ms, min_ms=stats["min"] * ms, mean_ms=stats["mean"] * ms,
        stdev_ms=stats["stddev"] * ms, iqr_ms=stats["iqr"] * ms,
        p90_ms=summary.p90 * ms if summary else None, p99_ms=summary.p99 * ms if summary else None,
        ci95_low_ms=summary.ci95_low * ms if summary else None,
        ci95_high_ms=summary.ci95_high * ms if summary else None,
        noisy=is_noisy(stats["iqr"], median_s), stop_reason="pytest-benchmark",
        rounds=stats["rounds"], calls_per_round=stats.get("iterations"),
        samples_ms=[x * ms for x in data])
    agreement = None if info.get("agrees") is None else RowAgreement(
        info.get("max_abs_err"), info.get("max_rel_err"), info["agrees"])
    cold = ColdStart(prepare_s=info.get("prepare_s"), first_call_ms=info.get("first_call_ms"),
                     prepare_rss_mb=info.get("prepare_rss_mb"), peak_rss_mb=info.get("prepare_rss_mb"))
    model = _model_config(identity, bench.get("name", "?"))
    shape = (identity.batch_size, identity.seq_len)
    return Row(identity, timing=timing, agreement=agreement, cold_start=cold,
               workload=asdict(forward_fields(model, shape, median_s, None)))


def _model_identity(info: dict) -> dict:
    """The row identity's model fields from a benchmark's ``model`` record."""
    model = info.get("model") or {}
    sizes = {k: v for k, v in (model.get("config") or {}).items()
             if k in ("input_size", "hidden_size", "num_layers", "output_size")}
    return {"model_sha256": model.get("weights_sha256"), **sizes}


def _model_config(identity: Identity, benchmark: str) -> ModelConfig:
    try:
        return ModelConfig(identity.input_size, identity.hidden_size, identity.num_layers,
                           identity.output_size)
    except InputError as exc:
        raise InputError(f"expected the extra_info model config of benchmark {benchmark!r} to "
                         f"give the model's sizes: {exc}") from exc


def _checks(bench: dict) -> list[Check]:
    info = bench["extra_info"]
    identity = {"backend": info["backend"], "batch_size": info["batch_size"],
                "seq_len": info["seq_len"],
                "model_sha256": _model_identity(info)["model_sha256"]}
    return [Check(**{**check, **identity}) for check in info.get("checks", [])]


def from_pytest_benchmark(data: dict) -> dict:
    """A pytest-benchmark JSON dict as a harness results dict (``RunResult.to_dict()``'s shape).

    Not carried over: speedups (the harness pairs rounds of interleaved backends; these
    benchmarks ran one after the other), % of peak and memory beyond preparation.
    """
    if not is_pytest_benchmark(data):
        got = f"keys {sorted(data)}" if isinstance(data, dict) else type(data).__name__
        raise InputError("expected a pytest-benchmark JSON file (top-level 'benchmarks' and "
                         f"'machine_info'), got {got}")
    benchmarks = data["benchmarks"]
    rows = [_row(b) for b in benchmarks]
    checks = [c for b in benchmarks for c in _checks(b)]
    machine = data["machine_info"]
    first = benchmarks[0]["extra_info"] if benchmarks else {}
    environment = dict(machine.get("lstm_harness") or {
        "hostname": machine.get("node"), "cpu_model": (machine.get("cpu") or {}).get("brand_raw"),
        "versions": {"python": machine.get("python_version")},
    })
    environment.update({
        "source": "pytest-benchmark", "pytest_benchmark_version": data.get("version"),
        "timestamp": data.get("datetime"), "commit_info": data.get("commit_info"),
    })
    for key in ("device", "device_name", "threads", "settings"):
        if key in first:
            environment[key] = first[key]
    return {
        "schema_version": SCHEMA_VERSION,
        "environment": environment,
        "scenario": {"name": first.get("scenario", "default"), "source": "pytest-benchmark"},
        "model": first.get("model", {}),
        "tolerance": first.get("tolerance", {}),
        "rows": [r.to_dict() for r in rows],
        "checks": [c.to_dict() for c in checks],
    }
