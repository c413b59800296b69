"""The report's soak section: checks, per-worker figures, and RSS / fds / tasks over time."""

from __future__ import annotations

import html
from typing import Any

from harness.report.plotting import figure_png, pyplot
from harness.scenario.results import SoakSummary, to_json


def soak_plot(samples: list[dict[str, Any]], events: list[dict[str, Any]]) -> str:
    """RSS, open fds and asyncio tasks over time, per worker, with the load's end marked."""
    fig, axes = pyplot().subplots(3, 1, figsize=(9, 7), sharex=True)
    for worker in sorted({s["worker"] for s in samples}):
        mine = [s for s in samples if s.get("rss_bytes") is not None and s["worker"] == worker]
        ts = [s["t"] for s in mine]
        axes[0].plot(ts, [s["rss_bytes"] / 2**20 for s in mine], "o-", ms=3, label=f"RSS (w{worker})")
        heap = [s for s in mine if s.get("malloc_in_use_bytes") is not None]
        for key, style, label in (("malloc_in_use_bytes", "--", "malloc in use"),
                                  ("malloc_free_bytes", ":", "malloc kept free")):
            if heap:
                axes[0].plot([s["t"] for s in heap], [s[key] / 2**20 for s in heap], style,
                             label=f"{label} (w{worker})")
        axes[1].plot(ts, [s["open_fds"] for s in mine], "o-", ms=3, label=f"open fds (w{worker})")
        axes[1].plot(ts, [s["sessions_persistent"] for s in mine], ":", label=f"SSE sessions (w{worker})")
        axes[2].plot(ts, [s["asyncio_tasks"] for s in mine], "o-", ms=3, label=f"asyncio tasks (w{worker})")
    for ax, unit in zip(axes, ("MiB", "count", "count"), strict=True):
        for event in events:
            if event.get("kind") in ("load_start", "load_end"):
                ax.axvline(event["t"], color="grey", linestyle=":", linewidth=1)
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_title("gateway resources during the soak")
    axes[2].set_xlabel("time (s)")
    return figure_png(fig)


def soak_section(soak: SoakSummary, samples: list[dict[str, Any]], events: list[dict[str, Any]]) -> str:
    """The report's soak section: checks, per-worker figures, and the plot."""
    checks = "".join(f"<tr><th>{html.escape(k)}</th><td>{'pass' if v else 'FAIL'}</td></tr>"
                     for k, v in soak.checks.items())
    figures = "".join(f"<tr><th>worker {html.escape(w)}</th><td>{html.escape(str(to_json(f)))}</td></tr>"
                      for w, f in soak.workers.items())
    return (f"<h2>Soak</h2><table>{checks}<tr><th>unbalanced samples</th><td>{soak.unbalanced_samples} of "
            f"{soak.accounting_samples}</td></tr>{figures}</table>{soak_plot(samples, events)}")
