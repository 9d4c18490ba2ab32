"""One self-contained HTML page: CSS inline, figures embedded as base64 PNG, no network."""

from __future__ import annotations

import base64
from html import escape

from harness.core.results import UNTRUSTED, Verdict
from harness.workloads import WORKLOADS
from harness.workloads.columns import Column
from reports import columns as cols
from reports import plots

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0 2em; }
th, td { padding: 0.25em 0.6em; border-bottom: 1px solid #ddd; white-space: nowrap; }
th { background: #f4f4f4; }
tr.shape td { border-top: 2px solid #999; }
td.right { text-align: right; } td.center { text-align: center; }
.ok { color: #17803d; } .bad { color: #c0262d; font-weight: bold; } .warn { color: #a86b00; }
.scroll { overflow-x: auto; }
figure { margin: 1em 0; } img { max-width: 100%; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dt { font-weight: bold; }
"""


def _row_html(row: dict, new_shape: bool, columns: tuple[Column, ...]) -> str:
    cells = [f'<td class="{c.justify} {c.tone(row) or ""}">{escape(c.cell(row))}</td>'
             for c in columns]
    attrs = ' class="shape"' if new_shape else ""
    return f"<tr{attrs} data-backend=\"{escape(row['backend'])}\">{''.join(cells)}</tr>"


def _results_tables(result: dict, workloads: cols.Workloads) -> list[str]:
    parts = []
    for scenario, rows in cols.by_scenario(result, workloads):
        columns = cols.columns_for(rows, cols.focus(result), workloads)
        header = "".join(f"<th>{escape(c.header)}</th>" for c in columns)
        body = "".join(_row_html(r, b, columns)
                       for r, b in zip(rows, cols.shape_breaks(rows), strict=True))
        parts.append(f"<h2>{escape(cols.title(result, scenario))}</h2>\n"
                     f'<div class="scroll"><table class="results"><thead><tr>{header}</tr></thead>'
                     f"<tbody>{body}</tbody></table></div>")
    return parts


def _checks_table(result: dict, workloads: cols.Workloads) -> str:
    lines = cols.check_summary(result, workloads)
    if not lines:
        return ""
    header = "".join(f"<th>{escape(h)}</th>" for h in cols.CHECK_HEADERS)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in line.cells()) + "</tr>"
                   for line in lines)
    caption = cols.tolerance_caption(result, workloads)
    caption_html = f"<caption>{escape(caption)}</caption>" if caption else ""
    return (f"<h2>Agreement with the float64 reference</h2>\n<table class=\"checks\">{caption_html}"
            f"<thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>")


def _verdict(result: dict) -> str:
    text = cols.verdict_text(result)
    if text is None:
        return ""
    verdict = result["verdict"]["verdict"]
    tone = "ok" if verdict == Verdict.VALID else "bad" if verdict in UNTRUSTED else "warn"
    return f'<p class="verdict {tone}">{escape(text)}</p>'


def _environment(result: dict) -> str:
    env = result.get("environment", {})
    versions = env.get("versions") or {}
    items = {"device": env.get("device_name"), "git commit": env.get("git_commit"),
             "date": env.get("timestamp"), "command": env.get("command"),
             "versions": ", ".join(f"{k} {v}" for k, v in versions.items() if v)}
    return "<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>"
                            for k, v in items.items() if v) + "</dl>"


def _figures(result: dict) -> list[str]:
    rows = result.get("rows", [])
    atol = (result.get("tolerance") or {}).get("atol")
    figures = [("latency", "Median latency vs batch size (log-log)", plots.latency_vs_batch(rows)),
               ("throughput", "Throughput with the 95% CI of the median", plots.throughput_bars(rows)),
               ("agreement", "Largest error against the float64 reference",
                plots.agreement_errors(rows, atol)),
               ("rollout-error", "Rollout error vs horizon", plots.rollout_error(rows)),
               ("speedup-hidden", "Speedup against eager as the hidden size grows, one line per "
                "batch size (dashed: 2 layers or more), 95% CI shaded", plots.speedup_vs_hidden(rows)),

               ("serving", "LoadGen p99 latency vs offered rate, with the bound",
                plots.latency_vs_offered_rate(rows)),
               ("batches", "Batch sizes the dynamic batcher formed", plots.batches_formed(rows))]
    return [f'<figure id="fig-{name}"><img alt="{escape(caption)}" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>"
            for name, caption, png in figures if png is not None]


def render_html(result: dict, workloads: cols.Workloads = WORKLOADS) -> str:
    scenario = result.get("scenario", {}).get("name", "")
    page_title = escape(f"lstm-harness report · {scenario}")
    body = "\n".join([f"<h1>{page_title}</h1>", _environment(result), _verdict(result),
                      *_results_tables(result, workloads), _checks_table(result, workloads),
                      *_figures(result)])
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{page_title}</title><style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n")
