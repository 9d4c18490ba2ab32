"""The console table: backend x shape, fastest first within each shape."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def _agreement(row: dict) -> Text:
    if row.get("agrees") is None:
        return Text("—", style="dim")
    err = row.get("max_abs_err")
    err_text = "nan" if err is None else f"{err:.1e}"
    if row["agrees"]:
        return Text(f"✓ {err_text}", style="green")
    return Text(f"✗ {err_text}", style="bold red")


def _speedup(row: dict) -> str:
    s = row.get("speedup_vs_eager")
    if s is None:
        return "—"
    lo, hi = row.get("speedup_ci95_low"), row.get("speedup_ci95_high")
    return f"{s:.2f}×" if lo is None else f"{s:.2f}× [{lo:.2f}–{hi:.2f}]"


def sort_rows(rows: list[dict]) -> list[dict]:
    """Group by shape; within a shape the fastest first, then unavailable and failed rows."""
    return sorted(rows, key=lambda r: (r["seq_len"], r["batch_size"],
                                       r.get("median_ms") is None, r.get("median_ms") or 0.0))


def results_table(result: dict, title: str | None = None) -> Table:
    env = result.get("environment", {})
    scenario = result.get("scenario", {}).get("name", "")
    table = Table(title=title or f"lstm-harness · {scenario} · {env.get('device_name', '')}",
                  title_justify="left")
    for header, justify in [("backend", "left"), ("device", "left"), ("dtype", "left"),
                            ("batch", "right"), ("seq", "right"), ("median ms", "right"),
                            ("p90 ms", "right"), ("p99 ms", "right"), ("seq/s", "right"),
                            ("vs eager [95% CI]", "right"), ("agrees (max err)", "left"),
                            ("% peak", "right"), ("prep s", "right"), ("1st call ms", "right"),
                            ("rss MB", "right"), ("noisy", "center")]:
        table.add_column(header, justify=justify, no_wrap=True)
    previous_shape = None
    for row in sort_rows(list(result.get("rows", []))):
        shape = (row["batch_size"], row["seq_len"])
        if previous_shape is not None and shape != previous_shape:
            table.add_section()
        previous_shape = shape
        head = [row["backend"], row["device"], row["dtype"], str(row["batch_size"]),
                str(row["seq_len"])]
        if row.get("status", "ok") != "ok":
            style = "yellow" if row["status"] == "unavailable" else "bold red"
            table.add_row(*head, Text(f"{row['status']}: {row.get('reason') or ''}", style=style))
            continue
        table.add_row(
            *head, _fmt(row.get("median_ms"), ".3f"), _fmt(row.get("p90_ms"), ".3f"),
            _fmt(row.get("p99_ms"), ".3f"), _fmt(row.get("throughput_seq_s"), ",.0f"),
            _speedup(row), _agreement(row), _fmt(row.get("pct_peak"), ".1f", "%"),
            _fmt(row.get("prepare_s"), ".2f"), _fmt(row.get("first_call_ms"), ".1f"),
            _fmt(row.get("peak_rss_mb"), ".0f"),
            Text("noisy", style="yellow") if row.get("noisy") else "",
        )
    return table


def checks_table(result: dict) -> Table:
    """Per backend: how many agreement checks passed, and the worst error seen."""
    table = Table(title="Agreement with the float64 reference", title_justify="left")
    for header in ("backend", "checks passed", "max abs err", "max rel err", "shapes (batch×seq)"):
        table.add_column(header, no_wrap=True)
    by_backend: dict[str, list[dict]] = {}
    for check in result.get("checks", []):
        by_backend.setdefault(check["backend"], []).append(check)
    tol = result.get("tolerance", {})
    for backend, checks in by_backend.items():
        passed = sum(c["agrees"] for c in checks)
        ok = passed == len(checks)
        errs = [c["max_abs_err"] for c in checks if c["max_abs_err"] is not None]
        rels = [c["max_rel_err"] for c in checks if c["max_rel_err"] is not None]
        shapes = sorted({(c["batch_size"], c["seq_len"]) for c in checks})
        table.add_row(backend, Text(f"{passed}/{len(checks)}", style="green" if ok else "bold red"),
                      f"{max(errs):.1e}" if len(errs) == len(checks) else "nan",
                      f"{max(rels):.1e}" if len(rels) == len(checks) else "nan",
                      ", ".join(f"{b}×{s}" for b, s in shapes))
    if tol:
        table.caption = f"tolerance ({tol.get('dtype')}): atol {tol.get('atol')}, rtol {tol.get('rtol')}"
    return table
