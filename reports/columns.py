"""What a results row shows, defined once for every format (console, Markdown, HTML).

A column is a header, an alignment and a function from a row dict to its cell text; the
formats differ only in how they draw cells, never in which figures they show.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    header: str
    justify: str  # "left", "right" or "center"
    cell: Callable[[dict], str]


def fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def agreement(row: dict) -> str:
    if row.get("agrees") is None:
        return "—"
    err = row.get("max_abs_err")
    return f"{'✓' if row['agrees'] else '✗'} {'nan' if err is None else f'{err:.1e}'}"


def speedup(row: dict) -> str:
    s = row.get("speedup_vs_eager")
    if s is None:
        return "—"
    lo, hi = row.get("speedup_ci95_low"), row.get("speedup_ci95_high")
    return f"{s:.2f}×" if lo is None else f"{s:.2f}× [{lo:.2f}–{hi:.2f}]"


def memory(row: dict) -> str:
    """Peak RSS growth, and the CUDA allocator's peak where the row ran on a GPU."""
    rss = fmt(row.get("peak_rss_mb"), ".0f")
    cuda = row.get("cuda_max_mem_mb")
    return rss if cuda is None else f"{rss} / {cuda:.0f}"


HEAD = [
    Column("backend", "left", lambda r: r["backend"]),
    Column("device", "left", lambda r: r["device"]),
    Column("dtype", "left", lambda r: r["dtype"]),
    Column("batch", "right", lambda r: str(r["batch_size"])),
    Column("seq", "right", lambda r: str(r["seq_len"])),
]
MEASURED = [
    Column("median ms", "right", lambda r: fmt(r.get("median_ms"), ".3f")),
    Column("p90 ms", "right", lambda r: fmt(r.get("p90_ms"), ".3f")),
    Column("p99 ms", "right", lambda r: fmt(r.get("p99_ms"), ".3f")),
    Column("seq/s", "right", lambda r: fmt(r.get("throughput_seq_s"), ",.0f")),
    Column("vs eager [95% CI]", "right", speedup),
    Column("agrees (max err)", "left", agreement),
    Column("% peak", "right", lambda r: fmt(r.get("pct_peak"), ".1f", "%")),
    Column("prep s", "right", lambda r: fmt(r.get("prepare_s"), ".2f")),
    Column("1st call ms", "right", lambda r: fmt(r.get("first_call_ms"), ".1f")),
    Column("rss MB", "right", memory),
]
NOTES = Column("notes", "left", lambda r: status_text(r) or ("noisy" if r.get("noisy") else ""))
COLUMNS = HEAD + MEASURED + [NOTES]

# Streaming rows time one sample into a live stream (median_ms is per step) against
# re-running the whole window; their agreement covers the outputs, h and c at every step.
STREAMING = [
    Column("step ms", "right", lambda r: fmt(r.get("step_ms"), ".3f")),
    Column("p99 step ms", "right", lambda r: fmt(r.get("p99_ms"), ".3f")),
    Column("window ms", "right", lambda r: fmt(r.get("window_ms"), ".3f")),
    Column("step / window", "right", lambda r: fmt(r.get("step_vs_window"), ".3f", "×")),
    Column("samples/s", "right", lambda r: fmt(r.get("throughput_steps_s"), ",.0f")),
    Column("vs eager [95% CI]", "right", speedup),
    Column("agrees y,h,c (max err)", "left", agreement),
    Column("prep s", "right", lambda r: fmt(r.get("prepare_s"), ".2f")),
]


def drift(row: dict) -> str:
    if row.get("horizon") is None:
        return "—"
    return "never" if row.get("drift_horizon") is None else f"step {row['drift_horizon']}"


# Rollout rows time a whole forecast of `horizon` steps; a row agrees only if the one-step
# check and the forecast (within the rollout band at every step) both do.
ROLLOUT = [
    Column("horizon", "right", lambda r: fmt(r.get("horizon"), "d")),
    Column("ms/rollout", "right", lambda r: fmt(r.get("median_ms"), ".2f")),
    Column("p99 ms", "right", lambda r: fmt(r.get("p99_ms"), ".2f")),
    Column("vs eager [95% CI]", "right", speedup),
    Column("1-step err", "right", lambda r: fmt(r.get("max_abs_err"), ".1e")),
    Column("rollout max err", "right", lambda r: fmt(r.get("max_abs_err_rollout"), ".1e")),
    Column("drifts at", "left", drift),
    Column("MSE vs truth", "right", lambda r: fmt(r.get("mse_vs_truth"), ".2e")),
    Column("agrees", "left", lambda r: "—" if r.get("agrees") is None else "✓" if r["agrees"] else "✗"),
]


def columns_for(rows: list[dict], focus: str = "median") -> list[Column]:
    """The columns of one table: by the rows' mode, and for the forward mode the scenario's
    focus, where "tail" leads with p90 and p99."""
    mode = rows[0].get("mode", "forward") if rows else "forward"
    if mode == "streaming":
        return HEAD + STREAMING + [NOTES]
    if mode == "rollout":
        return HEAD + ROLLOUT + [NOTES]
    if focus == "tail":
        return HEAD + MEASURED[1:3] + MEASURED[:1] + MEASURED[3:] + [NOTES]
    return COLUMNS


def status_text(row: dict) -> str | None:
    """Why a row was not measured; it goes last, so a long reason does not widen the figures."""
    if row.get("status", "ok") == "ok":
        return None
    return f"{row['status']}: {row.get('reason') or ''}"


SORT_KEYS = {"median": "median_ms", "tail": "p99_ms", "throughput": "throughput_seq_s"}


def sort_rows(rows: list[dict], key: str = "median_ms") -> list[dict]:
    """Group by shape; within a shape the best first (lowest ``key``, highest for a throughput),
    then unavailable and failed rows."""
    sign = -1.0 if key.startswith("throughput") else 1.0
    return sorted(rows, key=lambda r: (r["seq_len"], r["batch_size"], r.get(key) is None,
                                       sign * (r.get(key) or 0.0)))


def focus(result: dict) -> str:
    return result.get("scenario", {}).get("focus", "median")


def by_scenario(result: dict) -> list[tuple[str, list[dict]]]:
    """Rows grouped into one table per scenario (and mode), each sorted best first by the
    scenario's focus (fastest median by default)."""
    default = result.get("scenario", {}).get("name", "")
    groups: dict[str, list[dict]] = {}
    for row in result.get("rows", []):
        name = row.get("scenario") or default
        if row.get("mode", "forward") != "forward":
            name = f"{name} ({row['mode']})"
        groups.setdefault(name, []).append(row)
    key = SORT_KEYS.get(focus(result), "median_ms")
    return [(name, sort_rows(rows, key)) for name, rows in groups.items()]


def shape_breaks(rows: list[dict]) -> list[bool]:
    """For each sorted row, whether it starts a new shape (a section break in a table)."""
    shapes = [(r["batch_size"], r["seq_len"]) for r in rows]
    return [i > 0 and shapes[i] != shapes[i - 1] for i in range(len(shapes))]


CHECK_NAMES = {"streaming": "stream y,h,c", "rollout": "rollout"}


def check_summary(result: dict) -> list[list[str]]:
    """Per backend (and dtype, where several ran, and kind of check beyond the one-window
    one): checks passed, worst absolute and relative error, shapes checked."""
    all_checks = result.get("checks", [])
    several_dtypes = len({c.get("dtype", "fp32") for c in all_checks}
                         - {"fp64"}) > 1  # the reference is always fp64
    by_backend: dict[str, list[dict]] = {}
    for check in all_checks:
        label = check["backend"]
        if several_dtypes:
            label += f" {check.get('dtype', 'fp32')}"
        if check.get("mode", "forward") in CHECK_NAMES:
            label += f" ({CHECK_NAMES[check['mode']]})"
        by_backend.setdefault(label, []).append(check)
    lines = []
    for backend, checks in by_backend.items():
        passed = sum(bool(c["agrees"]) for c in checks)
        errs = [c["max_abs_err"] for c in checks if c["max_abs_err"] is not None]
        rels = [c["max_rel_err"] for c in checks if c["max_rel_err"] is not None]
        shapes = sorted({(c["batch_size"], c["seq_len"]) for c in checks})
        lines.append([backend, f"{passed}/{len(checks)}",
                      f"{max(errs):.1e}" if len(errs) == len(checks) else "nan",
                      f"{max(rels):.1e}" if len(rels) == len(checks) else "nan",
                      ", ".join(f"{b}×{s}" for b, s in shapes)])
    return lines


CHECK_HEADERS = ("backend", "checks passed", "max abs err", "max rel err", "shapes (batch×seq)")


def tolerance_caption(result: dict) -> str | None:
    tol = result.get("tolerance") or {}
    if not tol:
        return None
    lines = [f"tolerance ({t.get('dtype')}): atol {t.get('atol')}, rtol {t.get('rtol')}"
             for t in tol.get("by_dtype", {tol.get("dtype"): tol}).values()]
    if "rollout" in tol:
        lines.append(f"rollout band: |forecast - float64 forecast| <= {tol['rollout']['atol']} "
                     f"at every step; 'drifts at' is the first step outside it")
    return "; ".join(lines)


def best_throughput(result: dict) -> list[list[str]]:
    """Per backend, device and dtype: the best sequences/s over the forward rows, and where."""
    best: dict[tuple, dict] = {}
    for row in result.get("rows", []):
        key = (row["backend"], row["device"], row["dtype"])
        seqs = row.get("throughput_seq_s")
        if row.get("mode", "forward") == "forward" and seqs and \
                (key not in best or seqs > best[key]["throughput_seq_s"]):
            best[key] = row
    ranked = sorted(best.items(), key=lambda kv: -kv[1]["throughput_seq_s"])
    return [[*key, f"{row['throughput_seq_s']:,.0f}", f"{row['batch_size']}×{row['seq_len']}"]
            for key, row in ranked]


BEST_HEADERS = ("backend", "device", "dtype", "best seq/s", "at batch×seq")


def title(result: dict, scenario: str) -> str:
    return f"lstm-harness · {scenario} · {result.get('environment', {}).get('device_name', '')}"
