"""``report.html`` of a run: cycle time with the model, pool use against its limit, sessions open."""

from __future__ import annotations

import html
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from harness.report.plotting import figure_png, pyplot
from harness.scenario.collect import Collected


def _mark_events(ax: Any, events: list[dict[str, Any]]) -> None:
    for event in events:
        if event["kind"] in ("load_start", "load_end"):
            continue
        ax.axvline(event["t"], color="tab:red", linestyle=":", linewidth=1)
        ax.annotate(str(event.get("label", event["kind"])), (event["t"], ax.get_ylim()[1]), fontsize=7,
                    rotation=90, va="top", ha="right", color="tab:red")


def _timeline(title: str, ylabel: str, height: float, data: Collected, draw: Any) -> str:
    """One time-series figure: ``draw(ax)`` plots, then axes, grid, event marks and legend."""
    fig, ax = pyplot().subplots(figsize=(9, height))
    draw(ax)
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _mark_events(ax, data.events)
    ax.legend(fontsize=7)
    return figure_png(fig)


def _by_worker(rows: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    return [(w, [r for r in rows if r["worker"] == w]) for w in sorted({r["worker"] for r in rows})]


def cycle_plot(data: Collected, model_ms: Sequence[float | None]) -> str:
    """Cycle duration over time per worker, the model's prediction (one per cycle) as a dashed line."""
    model_by_cycle = {id(c): m for c, m in zip(data.cycles, model_ms, strict=True)}

    def draw(ax: Any) -> None:
        for worker, cycles in _by_worker(data.cycles):
            ts = [c["t"] for c in cycles]
            ax.plot(ts, [c["total_ms"] for c in cycles], "o-", ms=3, label=f"measured (w{worker})")
            ax.plot(ts, [model_by_cycle[id(c)] for c in cycles], "--", label=f"model (w{worker})")

    return _timeline("cleanup cycle duration", "cleanup cycle (ms)", 3.4, data, draw)


def window_means(samples: Sequence[Mapping[str, Any]], key: str = "checked_out_seconds") -> list[tuple[float, float]]:
    """The time-weighted mean of a gauge over each interval between two samples, from the pool monitor's
    cumulative gauge-seconds: ``(t, Δ gauge_seconds / Δ uptime)`` at the interval's end."""
    out = []
    for before, after in itertools.pairwise(samples):
        span = float(after.get("uptime_seconds") or 0) - float(before.get("uptime_seconds") or 0)
        if span > 0 and after.get(key) is not None and before.get(key) is not None:
            out.append((float(after["t"]), (float(after[key]) - float(before[key])) / span))
    return out


def window_peaks(cycles: Sequence[Mapping[str, Any]], key: str = "checked_out_peak") -> tuple[list[float], list[float]]:
    """Step coordinates of the pool monitor's per-window peaks: each cycle record carries the peak of the window
    that ended with it (from the previous cycle's end), so a burst between two 1 s samples still shows."""
    xs: list[float] = []
    ys: list[float] = []
    previous = None
    for cycle in cycles:
        end = float(cycle["t"])
        start = previous if previous is not None else end
        peak = float(cycle["pool"][key])
        xs += [start, end]
        ys += [peak, peak]
        previous = end
    return xs, ys


def pool_plot(data: Collected) -> str:
    """Connections checked out against the pool limit: each window's peak (from the cycle records) and the
    time-weighted mean between samples; waiters, and Postgres connections by the gateways."""
    cycles_by_worker = dict(_by_worker(data.cycles))

    def draw(ax: Any) -> None:
        for worker, samples in _by_worker(data.pool_samples):
            xs, ys = window_peaks(cycles_by_worker.get(worker, []))
            if xs:
                ax.plot(xs, ys, label=f"checked out, window peak (w{worker})")
            means = window_means(samples)
            ax.plot([t for t, _ in means], [m for _, m in means], label=f"checked out, mean (w{worker})")
            ax.plot([s["t"] for s in samples], [s["limit"] for s in samples], "--", label=f"pool limit (w{worker})")
            wx, wy = window_peaks(cycles_by_worker.get(worker, []), "waiters_peak")
            if wx:
                ax.plot(wx, wy, ":", label=f"waiters, window peak (w{worker})")
        if data.pg_samples:
            ax.plot([s["t"] for s in data.pg_samples], [s["total"] for s in data.pg_samples], color="grey",
                    alpha=0.6, label="pg_stat_activity (gateways)")

    return _timeline("DB pool saturation", "connections", 3.4, data, draw)


def sessions_plot(data: Collected) -> str:
    """Sessions open over time, per worker."""

    def draw(ax: Any) -> None:
        for worker, samples in _by_worker(data.pool_samples):
            ax.plot([s["t"] for s in samples], [s["sessions_active"] for s in samples], label=f"open (w{worker})")

    return _timeline("sessions open", "sessions", 3.0, data, draw)


def _figures_table(summary: dict[str, Any]) -> str:
    c, p, s, lo = summary["cleanup"], summary["pool"], summary["sessions"], summary["locust"]
    rows = [
        ("cleanup cycles", c["cycles"]),
        ("cycle total ms p50 / p95 / max", f'{c["total_ms"]["p50"]} / {c["total_ms"]["p95"]} / {c["total_ms"]["max"]}'),
        ("model ms p50 / measured÷model p50, p95", f'{c["model_ms"]["p50"]} / {c["model_ratio"]["p50"]}, '
                                                    f'{c["model_ratio"]["p95"]}'),
        ("binding constraint", c["binding"]),
        ("refresh errors", c["refresh_errors"]),
        ("pool checked out peak / limit", f'{p["checked_out_peak"]} / {p["limit"]}'),
        ("pool exhausted fraction", p["exhausted_fraction"]),
        ("waiters peak / wait ms p95 / timeouts", f'{p["waiters_peak"]} / {p["wait_ms"]["p95"]} / {p["timeouts"]}'),
        ("pg connections peak / max_connections", f'{p["pg_connections_peak"]} / {p["max_connections"]}'),
        ("sessions created / removed / leaked", f'{s["created"]} / {s["removed"]} / {s["leaked"]}'),
        ("active peak", s["active_peak"]),
        ("zombie ms p50 / p95, peak open", f'{s["zombie_ms"]["p50"]} / {s["zombie_ms"]["p95"]}, {s["zombies_peak"]}'),
        ("locust requests / failure ratio / rps", f'{lo["requests"]} / {lo["failure_ratio"]} / {lo["rps"]}'),
    ]
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def write_report(summary: dict[str, Any], data: Collected, extra_sections: list[str] | None = None,
                 model_ms: Sequence[float | None] | None = None) -> str:
    """The HTML page of one run (``model_ms``: the model beside each cycle, in order)."""
    config = summary["config"]
    knobs = ", ".join(f"{k}={v}" for k, v in config.items() if not isinstance(v, (dict, list)))
    warnings = "".join(f'<p class="warn">{html.escape(w)}</p>' for w in summary.get("warnings", []))
    sections = "".join(extra_sections or [])
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>cleanup load test report</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:1em auto}}th{{text-align:left;padding-right:1em}}
td{{font-family:monospace}}.warn{{color:#a00}}code{{font-size:85%}}</style></head><body>
<h1>Session cleanup under load</h1>
<p><code>{html.escape(knobs)}</code></p>{warnings}
{_figures_table(summary)}
<h2>Cleanup cycles</h2>{cycle_plot(data, model_ms or [None] * len(data.cycles))}
<h2>DB pool</h2>{pool_plot(data)}
<h2>Sessions</h2>{sessions_plot(data)}
{sections}
<p>Raw data: summary.json, cycles.csv, pool.csv, locust_stats.csv, locust.html, manifest.json.</p>
</body></html>
"""
