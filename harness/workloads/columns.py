"""What a results row shows, defined once for every format (console, Markdown, HTML).

A column is a header, an alignment and a function from a row dict to its cell text; the
formats differ only in how they draw cells, never in which figures they show. Each workload
declares its own columns from these pieces; ``reports`` only draws them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


def _plain(row: dict) -> str | None:
    return None


@dataclass(frozen=True)
class Column:
    header: str
    justify: str  # "left", "right" or "center"
    cell: Callable[[dict], str]
    # The cell's tone for this row: "ok", "bad", "warn" or None; each format picks colours.
    tone: Callable[[dict], str | None] = _plain
    # Free text (a reason) wraps where the console is too narrow, so the figures never do.
    wraps: bool = False


def fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def agreement(row: dict) -> str:
    if row.get("agrees") is None:
        return "—"
    err = row.get("max_abs_err")
    return f"{'✓' if row['agrees'] else '✗'} {'nan' if err is None else f'{err:.1e}'}"


def verdict_mark(row: dict) -> str:
    return "—" if row.get("agrees") is None else "✓" if row["agrees"] else "✗"


def speedup(row: dict) -> str:
    s = row.get("speedup_vs_eager")
    if s is None:
        return "—"
    lo, hi = row.get("speedup_ci95_low"), row.get("speedup_ci95_high")
    return f"{s:.2f}×" if lo is None or hi is None else f"{s:.2f}× [{lo:.2f}–{hi:.2f}]"


def memory(row: dict) -> str:
    """Peak RSS growth, and the CUDA allocator's peak where the row ran on a GPU."""
    rss = fmt(row.get("peak_rss_mb"), ".0f")
    cuda = row.get("cuda_max_mem_mb")
    return rss if cuda is None else f"{rss} / {cuda:.0f}"


def agreement_tone(row: dict) -> str | None:
    return None if row.get("agrees") is None else "ok" if row["agrees"] else "bad"


def notes_tone(row: dict) -> str | None:
    if not notes(row):
        return None
    return "bad" if row.get("status") == "failed" or row.get("verdict") == "contended" else "warn"


def status_text(row: dict) -> str | None:
    """Why a row was not measured; it goes last, so a long reason does not widen the figures."""
    if row.get("status", "ok") == "ok":
        return None
    return f"{row['status']}: {row.get('reason') or ''}"


def notes(row: dict) -> str:
    """Why a row was not measured; else whether its rounds were contended or noisy."""
    if status_text(row):
        return status_text(row)
    flags = []
    if row.get("verdict") == "contended":
        flags.append(f"contended ({row.get('foreign_load') or 0:.2f} cores outside)")
    if row.get("noisy"):
        flags.append("noisy")
    return ", ".join(flags)


def dtype_label(row: dict) -> str:
    """The row's dtype, and the run's where that was another (a baseline beside int8 rows)."""
    run_dtype = row.get("run_dtype")
    return row["dtype"] if run_dtype is None else f"{row['dtype']} ({run_dtype} run)"


HEAD = (
    Column("backend", "left", lambda r: r["backend"]),
    Column("device", "left", lambda r: r["device"]),
    Column("dtype", "left", dtype_label),
    Column("batch", "right", lambda r: str(r["batch_size"])),
    Column("seq", "right", lambda r: str(r["seq_len"])),
)
SPEEDUP = Column("vs eager [95% CI]", "right", speedup)
PREP_S = Column("prep s", "right", lambda r: fmt(r.get("prepare_s"), ".2f"))
NOTES = Column("notes", "left", notes, tone=notes_tone, wraps=True)
