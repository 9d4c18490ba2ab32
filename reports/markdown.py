"""Markdown tables, ready to paste into a pull request."""

from __future__ import annotations

from harness.workloads import WORKLOADS
from reports.columns import (
    CHECK_HEADERS,
    Workloads,
    by_scenario,
    check_summary,
    columns_for,
    focus,
    title,
    tolerance_caption,
    verdict_text,
)

_ALIGN = {"left": ":---", "right": "---:", "center": ":---:"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _line(cells: list[str]) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def render_markdown(result: dict, workloads: Workloads = WORKLOADS) -> str:
    parts = []
    for scenario, rows in by_scenario(result, workloads):
        columns = columns_for(rows, focus(result), workloads)
        parts += [f"### {title(result, scenario)}", "",
                  _line([c.header for c in columns]),
                  "| " + " | ".join(_ALIGN[c.justify] for c in columns) + " |",
                  *(_line([c.cell(r) for c in columns]) for r in rows), ""]
    summary = check_summary(result, workloads)
    if summary:
        parts += ["### Agreement with the float64 reference", "", _line(list(CHECK_HEADERS)),
                  "| " + " | ".join(["---"] * len(CHECK_HEADERS)) + " |",
                  *(_line(line.cells()) for line in summary), ""]
        caption = tolerance_caption(result, workloads)
        if caption:
            parts += [f"_{caption}_", ""]
    verdict = verdict_text(result)
    if verdict:
        parts += [f"**{verdict}**", ""]
    return "\n".join(parts)
