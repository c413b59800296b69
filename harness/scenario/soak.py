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

The checks are pure functions here; ``harness soak`` (:mod:`harness.commands.soak`) exits 99 when one fails.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from gateway_sim.admin_client import AdminClient, AdminError
from harness.scenario.results import SoakSummary, SoakWorker

log = logging.getLogger(__name__)

RSS_GROWTH_LIMIT = 0.10
WINDOW_SECONDS = 60.0
SLACK = 2
SOAK_DEFAULTS: dict[str, Any] = {"run_time": 600.0, "users": 100, "spawn_rate": 50.0, "session_lifetime": "2-8",
                                 "abrupt_ratio": 0.3, "abandon_ratio": 0.3, "session_ttl": 8.0,
                                 "cleanup_interval": 2.0, "no_progress": True}
"""Steady churn with many abrupt drops and abandoned sessions, short TTL and cycles, for ten minutes."""


class ProcessSampler:
    """Samples each gateway's ``/admin/process`` beside the load, and adds the ``soak`` section (an extension)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.samples: list[dict[str, Any]] = []
        self._clients: list[AdminClient] = []
        self._collector: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._drained = False
        self.summary: SoakSummary | None = None

    def attach(self, run: Any) -> None:
        """Sample from the load's start to after the drain; summarize with the run's results."""
        run.events.load_start.add_listener(self._on_load_start)
        run.events.load_stop.add_listener(lambda run: self.stop())
        run.events.results.add_listener(self._on_results)

    def sample(self, phase: str) -> None:
        """One sample of every gateway, tagged ``baseline``, ``load`` or ``drained``."""
        for client in self._clients:
            try:
                payload = client.process()
            except (AdminError, OSError, ValueError) as exc:
                log.debug("sampling %s failed: %s", client.base_url, exc)
                continue
            self.samples.append({"t": round(self._collector.now(), 3), "phase": phase, **payload})

    def _on_load_start(self, run: Any) -> None:
        self._clients = [AdminClient(url) for url in run.stack.gateway_urls]
        self._collector = run.collector
        self.sample("baseline")
        self._thread = threading.Thread(target=self._loop, name="process-sampler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample("load")

    def stop(self) -> None:
        """Stop sampling; the last sample is the drained one (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if not self._drained and self._collector is not None:
            self._drained = True
            self.sample("drained")

    def _on_results(self, run: Any, data: Any, summary: Any, contribute: Any) -> None:
        from harness.report.soak_section import soak_section

        self.summary = soak_summary(self.samples, data.pool_samples, data.events, summary.sessions.leaked)
        contribute.section("soak", self.summary, soak_section(self.summary, self.samples, data.events))


def unbalanced_samples(pool_samples: list[dict[str, Any]]) -> int:
    """Samples where a worker's created != removed + active."""
    return sum(1 for s in pool_samples
               if int(s["sessions_created"] or 0) != int(s["sessions_removed"] or 0) + int(s["sessions_active"] or 0))


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def _event_t(events: list[dict[str, Any]], kind: str, default: float) -> float:
    return next((float(e["t"]) for e in events if e.get("kind") == kind), default)


def _worker_figures(samples: list[dict[str, Any]], load_start: float, load_end: float) -> SoakWorker:
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
    return SoakWorker(**{
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
    })


def soak_summary(samples: list[dict[str, Any]], pool_samples: list[dict[str, Any]], events: list[dict[str, Any]],
                 leaked: int | None) -> SoakSummary:
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
        "rss_growth_below_10pct": all_ok(lambda f: f.rss_growth is not None
                                         and f.rss_growth < RSS_GROWTH_LIMIT),
        "fds_back_to_baseline": all_ok(lambda f: f.net_fds_drained is not None
                                       and f.net_fds_drained <= f.net_fds_baseline + SLACK),
        "tasks_back_to_baseline": all_ok(lambda f: f.tasks_drained is not None
                                         and f.tasks_drained <= f.tasks_baseline + SLACK),
        "no_sessions_after_drain": all_ok(lambda f: f.sessions_drained == 0),
    }
    return SoakSummary(samples=len(samples), accounting_samples=len(pool_samples),
                       unbalanced_samples=unbalanced_samples(pool_samples), leaked=leaked, workers=workers,
                       checks=checks, ok=all(checks.values()), process_samples=list(samples))
