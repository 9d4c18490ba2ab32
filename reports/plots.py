"""Figures for the HTML report, drawn with matplotlib's Agg backend and returned as PNG bytes.

Each function returns None when the results hold nothing it could draw, so the report can
leave the figure out rather than show an empty frame.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no display, no GUI toolkit: the report is built headless
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import ticker  # noqa: E402

from reports.columns import model_label, several_models  # noqa: E402


def _measured(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r.get("status", "ok") == "ok" and r.get("median_ms") is not None]


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def _labeller(rows: list[dict]):
    """A row's series label: backend, device and dtype, and its model where the rows are of
    several (lines and bars of different models must not join)."""
    if several_models(rows):
        return lambda row: f"{row['backend']} · {row['device']} · {row['dtype']} · {model_label(row)}"
    return lambda row: f"{row['backend']} · {row['device']} · {row['dtype']}"


def latency_vs_batch(rows: list[dict]) -> bytes | None:
    """Median latency against batch size, one line per backend and seq_len, log-log."""
    series: dict[str, list[tuple[int, float]]] = {}
    label = _labeller(rows)
    for r in _measured(rows):
        series.setdefault(f"{label(r)} · seq {r['seq_len']}", []).append((r["batch_size"],
                                                                              r["median_ms"]))
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, points in sorted(series.items()):
        batch, ms = zip(*sorted(points), strict=True)
        ax.plot(batch, ms, marker="o", label=label)
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="median latency (ms)",
           title="Latency vs batch size")
    # Plain numbers read better than 2×10⁰; the ticks sit on the batch sizes measured.
    ax.set_xticks(sorted({b for points in series.values() for b, _ in points}))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    return _png(fig)


def _grouped_bars(ax, rows: list[dict], value, errors=None) -> None:
    """Bars grouped by shape, one colour per backend."""
    shapes = sorted({(r["batch_size"], r["seq_len"]) for r in rows})
    label_of = _labeller(rows)
    labels = sorted({label_of(r) for r in rows})
    width = 0.8 / len(labels)
    for i, label in enumerate(labels):
        xs, ys, err = [], [], []
        for j, shape in enumerate(shapes):
            for r in rows:
                if label_of(r) == label and (r["batch_size"], r["seq_len"]) == shape:
                    xs.append(j + i * width)
                    ys.append(value(r))
                    if errors:
                        err.append(errors(r))
        ax.bar(xs, ys, width, label=label,
               yerr=np.array(err).T if errors and err else None, capsize=3)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(shapes))],
                  [f"batch {b}\nseq {s}" for b, s in shapes])
    ax.legend(fontsize="small")


def throughput_bars(rows: list[dict]) -> bytes | None:
    """Sequences per second, with error bars from the CI of the median latency."""
    measured = [r for r in _measured(rows) if r.get("throughput_seq_s")]
    if not measured:
        return None

    def error(r: dict) -> tuple[float, float]:
        lo_ms, hi_ms = r.get("ci95_low_ms"), r.get("ci95_high_ms")
        if not lo_ms or not hi_ms:
            return 0.0, 0.0
        # Throughput falls as latency rises: the slow end of the latency CI is the low end. A
        # CI that misses the median (a hand-edited file) draws no bar on that side.
        return (max(0.0, r["throughput_seq_s"] - r["batch_size"] / (hi_ms / 1e3)),
                max(0.0, r["batch_size"] / (lo_ms / 1e3) - r["throughput_seq_s"]))

    fig, ax = plt.subplots(figsize=(8, 4.5))
    _grouped_bars(ax, measured, lambda r: r["throughput_seq_s"], error)
    ax.set(yscale="log", ylabel="sequences / s", title="Throughput (95% CI of the median)")
    return _png(fig)


def agreement_errors(rows: list[dict], atol: float | None) -> bytes | None:
    """Largest absolute error against the float64 reference, per backend and shape."""
    with_err = [r for r in rows if r.get("max_abs_err") is not None]
    if not with_err:
        return None
    # An exact match (the reference against itself) has no place on a log axis: floor it.
    floor = 1e-12
    fig, ax = plt.subplots(figsize=(8, 4.5))
    _grouped_bars(ax, with_err, lambda r: max(r["max_abs_err"], floor))
    if atol:
        ax.axhline(atol, color="red", linestyle="--", label=f"atol {atol:g}")
        ax.legend(fontsize="small")
    ax.set(yscale="log", ylabel="max |error|", title=f"Agreement error (exact = {floor:g})")
    return _png(fig)


def rollout_error(rows: list[dict]) -> bytes | None:
    """Error against the horizon for rollout rows that carry a per-step error list."""
    curves = [r for r in rows if r.get("rollout_err")]
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    label = _labeller(curves)
    for r in curves:
        err = np.asarray(r["rollout_err"], dtype=float)
        ax.plot(np.arange(1, err.size + 1), err, label=f"{label(r)} · batch {r['batch_size']}")
    ax.set(xlabel="horizon (steps)", ylabel="error", yscale="log", title="Rollout error vs horizon")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    return _png(fig)


def speedup_vs_hidden(rows: list[dict]) -> bytes | None:
    """Each backend's speedup against eager as the hidden size grows: one panel per backend,
    one line per batch size (and layer count, dashed beyond one layer), with the speedup's
    95% CI as a band. Drawn only where the rows cover two hidden sizes or more."""
    measured = [r for r in _measured(rows) if r.get("speedup_vs_eager") is not None
                and r.get("hidden_size") is not None and r["backend"] != "eager"]
    if len({r["hidden_size"] for r in measured}) < 2:
        return None
    backends = sorted({r["backend"] for r in measured})
    fig, axes = plt.subplots(1, len(backends), figsize=(4.2 * len(backends), 4.2), squeeze=False,
                             sharey=True)
    batches = sorted({r["batch_size"] for r in measured})
    colours = {b: plt.get_cmap("tab10")(i % 10) for i, b in enumerate(batches)}
    for ax, backend in zip(axes[0], backends, strict=True):
        lines: dict[tuple, list[dict]] = {}
        for r in measured:
            if r["backend"] == backend:
                key = (r["batch_size"], r.get("num_layers") or 1, r["seq_len"], r["device"], r["dtype"])
                lines.setdefault(key, []).append(r)
        for (batch, layers, seq_len, device, dtype), points in sorted(lines.items()):
            points.sort(key=lambda r: r["hidden_size"])
            hidden = [r["hidden_size"] for r in points]
            ax.plot(hidden, [r["speedup_vs_eager"] for r in points], marker="o",
                    color=colours[batch], linestyle="-" if layers == 1 else "--",
                    label=f"batch {batch} · {layers} layer{'s' if layers > 1 else ''}"
                          + (f" · seq {seq_len}" if len({k[2] for k in lines}) > 1 else "")
                          + (f" · {device} {dtype}" if len({k[3:] for k in lines}) > 1 else ""))
            ax.fill_between(hidden, [r["speedup_ci95_low"] for r in points],
                            [r["speedup_ci95_high"] for r in points], color=colours[batch], alpha=0.15)
        ax.axhline(1.0, color="grey", linewidth=1)
        ax.set(xscale="log", yscale="log", xlabel="hidden size", title=backend)
        ax.set_xticks(sorted({r["hidden_size"] for r in measured}))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="x-small")
    axes[0][0].set_ylabel("speedup vs eager (×, above 1 is faster)")
    return _png(fig)


def latency_vs_offered_rate(rows: list[dict]) -> bytes | None:
    """LoadGen's p99 latency against the rate offered, one line per backend through every
    test of its rate search (filled: VALID, hollow: INVALID), with the latency bound drawn."""
    searched = [r for r in rows if r.get("search")]
    if not searched:
        return None
    several = len({r["batch_size"] for r in searched}) > 1
    label_of = _labeller(searched)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in searched:
        points = sorted((t["offered_qps"], t["p99_ms"], t["valid"]) for t in r["search"]
                        if t.get("p99_ms") is not None)
        if not points:
            continue
        label = label_of(r) + (f" · max batch {r['batch_size']}" if several else "")
        rate, p99, valid = zip(*points, strict=True)
        line, = ax.plot(rate, p99, label=label, alpha=0.8)
        ax.scatter([x for x, v in zip(rate, valid, strict=True) if v],
                   [y for y, v in zip(p99, valid, strict=True) if v], color=line.get_color(), zorder=3)
        ax.scatter([x for x, v in zip(rate, valid, strict=True) if not v],
                   [y for y, v in zip(p99, valid, strict=True) if not v], facecolors="none",
                   edgecolors=line.get_color(), zorder=3)
    for bound in sorted({r["latency_bound_ms"] for r in searched if r.get("latency_bound_ms")}):
        ax.axhline(bound, color="red", linestyle="--", label=f"p99 bound {bound:g} ms")
    ax.set(xscale="log", yscale="log", xlabel="offered rate (queries/s)",
           ylabel="LoadGen p99 latency (ms)",
           title="Latency vs offered rate (filled: VALID, hollow: INVALID)")
    plain = ticker.FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    return _png(fig)


def batches_formed(rows: list[dict]) -> bytes | None:
    """The dynamic batcher's batches, one line per row: the share of queries answered in a
    batch of each size (a batch of 8 answers 8 queries)."""
    formed = [r for r in rows if r.get("batches_formed")]
    if not formed:
        return None
    several = len({(r["batch_size"], r.get("mode")) for r in formed}) > 1
    label_of = _labeller(formed)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in formed:
        sizes = np.array([size for size, _ in r["batches_formed"]], dtype=float)
        queries = sizes * np.array([count for _, count in r["batches_formed"]], dtype=float)
        label = label_of(r) + (f" · {r.get('mode')} · max batch {r['batch_size']}" if several else "")
        ax.step(sizes, 100.0 * queries / queries.sum(), where="mid", marker="o", markersize=3,
                label=label)
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.set(xlabel="batch size formed", ylabel="% of queries answered",
           title="Batches the dynamic batcher formed (the reported test)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return _png(fig)
