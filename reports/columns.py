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
    Column("notes", "left", lambda r: status_text(r) or ("noisy" if r.get("noisy") else "")),
]
COLUMNS = HEAD + MEASURED


def status_text(row: dict) -> str | None:
    """Why a row was not measured; it goes last, so a long reason does not widen the figures."""
    if row.get("status", "ok") == "ok":
        return None
    return f"{row['status']}: {row.get('reason') or ''}"


def sort_rows(rows: list[dict]) -> list[dict]:
    """Group by shape; within a shape the fastest first, then unavailable and failed rows."""
    return sorted(rows, key=lambda r: (r["seq_len"], r["batch_size"],
                                       r.get("median_ms") is None, r.get("median_ms") or 0.0))


def by_scenario(result: dict) -> list[tuple[str, list[dict]]]:
    """Rows grouped into one table per scenario (and mode), each sorted fastest first."""
    default = result.get("scenario", {}).get("name", "")
    groups: dict[str, list[dict]] = {}
    for row in result.get("rows", []):
        name = row.get("scenario") or default
        if row.get("mode", "forward") != "forward":
            name = f"{name} ({row['mode']})"
        groups.setdefault(name, []).append(row)
    return [(name, sort_rows(rows)) for name, rows in groups.items()]


def shape_breaks(rows: list[dict]) -> list[bool]:
    """For each sorted row, whether it starts a new shape (a section break in a table)."""
    shapes = [(r["batch_size"], r["seq_len"]) for r in rows]
    return [i > 0 and shapes[i] != shapes[i - 1] for i in range(len(shapes))]


def check_summary(result: dict) -> list[list[str]]:
    """Per backend: checks passed, worst absolute and relative error, shapes checked."""
    by_backend: dict[str, list[dict]] = {}
    for check in result.get("checks", []):
        by_backend.setdefault(check["backend"], []).append(check)
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
    return f"tolerance ({tol.get('dtype')}): atol {tol.get('atol')}, rtol {tol.get('rtol')}"


def title(result: dict, scenario: str) -> str:
    return f"lstm-harness · {scenario} · {result.get('environment', {}).get('device_name', '')}"
