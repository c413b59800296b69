"""Soak: a long ``harness run`` of steady churn (clean closes, abrupt drops, abandoned sessions) that checks
session accounting and the gateway's resource use.

Besides everything ``harness run`` measures, every ``--sample-every`` seconds each gateway's
``/admin/process`` (RSS, open fds, asyncio tasks, pooled connections) is sampled, once more before the load
(baseline) and once after the drain. Checks, reported in ``summary.json`` under ``soak`` and in the report:

- created = removed + active in every sample of every worker, and 0 leaked rows after the drain;
- RSS growth < 10 % from the first window of the load to the last (window: 1 minute, or a quarter of a
  shorter load). Beside RSS the figures give glibc's bytes in use and kept free in the same windows: growth in
  use is a leak, growth kept free is the allocator holding freed memory (see ``--malloc-mmap-threshold``);
- no growth in open fds or asyncio tasks: after the drain each is back to its baseline (fds net of pooled
  connections, which the pool keeps open by design), within a slack of 2;
- no session left in any gateway after the drain, which by default lasts the session TTL plus two cleanup
  intervals, so abandoned sessions have expired by then.

Exit code 99 when a check fails (as ``gate`` does for a failed threshold).
"""

from __future__ import annotations

import argparse
import html
import logging
import threading
import urllib.error
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from harness.commands.arglists import duration_seconds
from harness.report.run_report import figure_png
from harness.scenario import run as run_cmd
from harness.scenario.collect import get_json

log = logging.getLogger(__name__)

RSS_GROWTH_LIMIT = 0.10
WINDOW_SECONDS = 60.0
SLACK = 2
EXIT_CHECK_FAILED = 99


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``harness run``'s arguments with soak defaults, plus ``--duration`` and ``--sample-every``."""
    run_cmd.add_arguments(parser)
    soak = parser.add_argument_group("soak")
    soak.add_argument("--duration", dest="run_time", type=duration_seconds,
                      help="how long the load runs: 60s, 10m (default 10m; same as --run-time)")
    soak.add_argument("--sample-every", type=duration_seconds, default=5.0,
                      help="seconds between samples of the gateways' RSS, fds and tasks (default 5)")
    parser.set_defaults(run_time=600.0, users=100, spawn_rate=50.0, session_lifetime="2-8", abrupt_ratio=0.3,
                        abandon_ratio=0.3, session_ttl=8.0, cleanup_interval=2.0, no_progress=True)


class ProcessSampler:
    """Samples each gateway's ``/admin/process`` beside the load (a ``harness run`` extension)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.samples: list[dict[str, Any]] = []
        self._urls: list[str] = []
        self._collector: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._drained = False
        self.summary: dict[str, Any] | None = None

    def sample(self, phase: str) -> None:
        """One sample of every gateway, tagged ``baseline``, ``load`` or ``drained``."""
        for url in self._urls:
            try:
                payload = get_json(f"{url}/admin/process")
            except (urllib.error.URLError, OSError, ValueError) as exc:
                log.debug("sampling %s failed: %s", url, exc)
                continue
            self.samples.append({"t": round(self._collector.now(), 3), "phase": phase, **payload})

    def start(self, stack: Any, collector: Any) -> None:
        self._urls = list(stack.gateway_urls)
        self._collector = collector
        self.sample("baseline")
        self._thread = threading.Thread(target=self._loop, name="process-sampler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample("load")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if not self._drained:
            self._drained = True
            self.sample("drained")

    def results(self, summary: dict[str, Any], data: Any) -> list[str]:
        self.summary = soak_summary(self.samples, data.pool_samples, data.events, summary["sessions"].get("leaked"))
        summary["soak"] = {**self.summary, "process_samples": self.samples}
        return [soak_section(self.summary, self.samples, data.events)]


def unbalanced_samples(pool_samples: list[dict[str, Any]]) -> int:
    """Samples where a worker's created != removed + active."""
    return sum(1 for s in pool_samples
               if int(s["sessions_created"] or 0) != int(s["sessions_removed"] or 0) + int(s["sessions_active"] or 0))


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def _event_t(events: list[dict[str, Any]], kind: str, default: float) -> float:
    return next((float(e["t"]) for e in events if e.get("kind") == kind), default)


def _worker_figures(samples: list[dict[str, Any]], load_start: float, load_end: float) -> dict[str, Any]:
    window = min(WINDOW_SECONDS, (load_end - load_start) / 4)
    load = [s for s in samples if s["phase"] == "load"]
    first = [s for s in load if s["t"] <= load_start + window]
    last = [s for s in load if s["t"] >= load_end - window]
    base = next((s for s in samples if s["phase"] == "baseline"), None)
    drained = next((s for s in samples if s["phase"] == "drained"), None)

    def net_fds(sample: dict[str, Any] | None) -> int | None:
        if sample is None or sample.get("open_fds") is None:
            return None
        return int(sample["open_fds"]) - int(sample["pool_connections"])

    def mean_mib(window: list[dict[str, Any]], key: str) -> float | None:
        return _mean([s[key] / 2**20 for s in window if s.get(key) is not None])

    rss_first, rss_last = mean_mib(first, "rss_bytes"), mean_mib(last, "rss_bytes")
    return {
        "window_s": round(window, 1),
        "rss_mb_first": rss_first,
        "rss_mb_last": rss_last,
        "rss_growth": round(rss_last / rss_first - 1, 4) if rss_first and rss_last else None,
        "malloc_in_use_mb_first": mean_mib(first, "malloc_in_use_bytes"),
        "malloc_in_use_mb_last": mean_mib(last, "malloc_in_use_bytes"),
        "malloc_free_mb_first": mean_mib(first, "malloc_free_bytes"),
        "malloc_free_mb_last": mean_mib(last, "malloc_free_bytes"),
        "fds_first": _mean([s["open_fds"] for s in first if s.get("open_fds") is not None]),
        "fds_last": _mean([s["open_fds"] for s in last if s.get("open_fds") is not None]),
        "tasks_first": _mean([s["asyncio_tasks"] for s in first]),
        "tasks_last": _mean([s["asyncio_tasks"] for s in last]),
        "net_fds_baseline": net_fds(base),
        "net_fds_drained": net_fds(drained),
        "tasks_baseline": base["asyncio_tasks"] if base else None,
        "tasks_drained": drained["asyncio_tasks"] if drained else None,
        "sessions_drained": drained["sessions_active"] if drained else None,
    }


def soak_summary(samples: list[dict[str, Any]], pool_samples: list[dict[str, Any]], events: list[dict[str, Any]],
                 leaked: int | None) -> dict[str, Any]:
    """The soak's figures per worker and its checks."""
    load_start = _event_t(events, "load_start", 0.0)
    load_end = _event_t(events, "load_end", max((s["t"] for s in samples), default=0.0))
    workers = {w: _worker_figures([s for s in samples if s["worker"] == w], load_start, load_end)
               for w in sorted({s["worker"] for s in samples})}
    figures = list(workers.values())

    def all_ok(check: Any) -> bool:
        return bool(figures) and all(check(f) for f in figures)

    checks = {
        "balanced_every_sample": bool(pool_samples) and unbalanced_samples(pool_samples) == 0,
        "no_leaked_rows": leaked == 0,
        "rss_growth_below_10pct": all_ok(lambda f: f["rss_growth"] is not None
                                         and f["rss_growth"] < RSS_GROWTH_LIMIT),
        "fds_back_to_baseline": all_ok(lambda f: f["net_fds_drained"] is not None
                                       and f["net_fds_drained"] <= f["net_fds_baseline"] + SLACK),
        "tasks_back_to_baseline": all_ok(lambda f: f["tasks_drained"] is not None
                                         and f["tasks_drained"] <= f["tasks_baseline"] + SLACK),
        "no_sessions_after_drain": all_ok(lambda f: f["sessions_drained"] == 0),
    }
    return {
        "samples": len(samples),
        "accounting_samples": len(pool_samples),
        "unbalanced_samples": unbalanced_samples(pool_samples),
        "leaked": leaked,
        "workers": workers,
        "checks": checks,
        "ok": all(checks.values()),
    }


def soak_plot(samples: list[dict[str, Any]], events: list[dict[str, Any]]) -> str:
    """RSS, open fds and asyncio tasks over time, per worker, with the load's end marked."""
    fig, axes = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
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


def soak_section(soak: dict[str, Any], samples: list[dict[str, Any]], events: list[dict[str, Any]]) -> str:
    """The report's soak section: checks, per-worker figures, and the plot."""
    checks = "".join(f"<tr><th>{html.escape(k)}</th><td>{'pass' if v else 'FAIL'}</td></tr>"
                     for k, v in soak["checks"].items())
    figures = "".join(f"<tr><th>worker {html.escape(w)}</th><td>{html.escape(str(f))}</td></tr>"
                      for w, f in soak["workers"].items())
    return (f"<h2>Soak</h2><table>{checks}<tr><th>unbalanced samples</th><td>{soak['unbalanced_samples']} of "
            f"{soak['accounting_samples']}</td></tr>{figures}</table>{soak_plot(samples, events)}")


def _malloc_text(figures: dict[str, Any]) -> str:
    if figures["malloc_in_use_mb_first"] is None or figures["malloc_in_use_mb_last"] is None:
        return ""
    return (f"; malloc in use {figures['malloc_in_use_mb_first']} -> {figures['malloc_in_use_mb_last']} MiB, "
            f"kept free {figures['malloc_free_mb_first']} -> {figures['malloc_free_mb_last']} MiB")


def run(args: argparse.Namespace) -> int:
    """``python -m harness soak``: the run, then the soak's checks (exit 99 if one fails)."""
    if args.drain is None:
        args.drain = args.session_ttl + 2 * args.cleanup_interval + 1
    sampler = ProcessSampler(args.sample_every)
    code = run_cmd.run(args, [sampler])
    soak = sampler.summary
    if soak is None:
        return code
    for name, passed in soak["checks"].items():
        print(f"soak {name}: {'pass' if passed else 'FAIL'}")
    for worker, figures in soak["workers"].items():
        print(f"soak worker {worker}: RSS {figures['rss_mb_first']} -> {figures['rss_mb_last']} MiB "
              f"({figures['rss_growth']:+.1%} over {figures['window_s']:g} s windows){_malloc_text(figures)}, "
              f"fds net of pool "
              f"{figures['net_fds_baseline']} -> {figures['net_fds_drained']}, asyncio tasks "
              f"{figures['tasks_baseline']} -> {figures['tasks_drained']} (baseline -> after drain)"
              if figures["rss_growth"] is not None else f"soak worker {worker}: too few samples")
    return code if code != 0 else 0 if soak["ok"] else EXIT_CHECK_FAILED
