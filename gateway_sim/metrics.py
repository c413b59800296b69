"""Cycle records and the Prometheus export of cycles, sessions and pool gauges."""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway_sim.pool_monitor import PoolSnapshot, PoolWindow


class CpuBetweenCycles:
    """The process's CPU share between one cycle's end and the next one's start (``time.process_time``: the
    event loop and, for the thread driver, its threads)."""

    def __init__(self) -> None:
        self._at: tuple[float, float] | None = None

    def at_start(self) -> float | None:
        """The share since the last :meth:`at_end` (None before the first)."""
        if self._at is None:
            return None
        cpu, wall = self._at
        elapsed = time.perf_counter() - wall
        return round(min(1.0, (time.process_time() - cpu) / elapsed), 4) if elapsed > 0 else None

    def at_end(self) -> None:
        """A cycle ended: start counting."""
        self._at = (time.process_time(), time.perf_counter())


@dataclass(frozen=True)
class CycleRecord:
    """One cleanup cycle: timings in ms, counts, and the pool as seen during the cycle."""

    worker: str
    cycle: int
    started_at: str
    strategy: str
    driver: str
    max_concurrent: int
    expiry_ms: float
    phase1_ms: float
    phase2_ms: float
    total_ms: float
    sessions_local: int
    checked: int
    removed_disconnected: int
    refreshed: int
    removed_missing: int
    refresh_errors: int
    expired: int
    max_inflight: int
    pool: PoolWindow
    pool_size: int
    max_overflow: int
    executor_threads: int | None
    error: str | None = None
    phase1_removal: str = "per-session"
    cpu_between_cycles: float | None = None
    """Share of a core this process used between the previous cycle's end and this one's start: its other
    work (HTTP requests, streams), which the same loop goes on serving during the cycle. None for the first."""

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["pool"] = self.pool.as_dict()
        return data


class CycleLog:
    """Keeps recent cycle records in memory and appends each to a JSON-lines file if asked."""

    def __init__(self, history: int = 1000, path: str | None = None) -> None:
        self.records: deque[CycleRecord] = deque(maxlen=history)
        self.path = Path(path) if path else None
        self.total = 0
        self.listeners: list[Callable[[CycleRecord], None]] = []
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, record: CycleRecord) -> None:
        self.records.append(record)
        self.total += 1
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record.as_dict()) + "\n")
        for listener in self.listeners:
            listener(record)

    def since(self, cycle: int) -> list[CycleRecord]:
        """Records with a cycle number greater than ``cycle``."""
        return [r for r in self.records if r.cycle > cycle]


class SessionEventLog:
    """Appends ``{"event", "session_id", "transport", "reason", "t"}`` lines (unix time) for each session event.

    The harness joins the ``removed`` lines with the clients' own close times to measure zombie time.
    """

    def __init__(self, path: str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed in close()

    def __call__(self, event: str, session_id: str, kind: str, reason: str) -> None:
        line = {"event": event, "session_id": session_id, "transport": kind, "reason": reason, "t": time.time()}
        self._fh.write(json.dumps(line) + "\n")

    def close(self) -> None:
        self._fh.close()


_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class GatewayMetrics:
    """Prometheus metrics of one gateway process, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple[int, str], Any] = {}
        r = self.registry
        self.cycle_seconds = Histogram(
            "mcp_cleanup_cycle_seconds",
            "Cleanup cycle duration by phase",
            ["phase"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.cycles = Counter("mcp_cleanup_cycles", "Cleanup cycles completed", registry=r)
        self.removed = Counter("mcp_sessions_removed", "Sessions removed, by reason", ["reason"], registry=r)
        self.created = Counter(
            "mcp_sessions_created", "Sessions created, by transport", ["transport"], registry=r
        )
        self.refresh_errors = Counter("mcp_cleanup_refresh_errors", "Refreshes that raised", registry=r)
        self.sessions_local = Gauge("mcp_sessions_local", "Sessions registered in this process", registry=r)
        self.max_inflight = Gauge(
            "mcp_cleanup_max_inflight", "Most refreshes in flight in the last cycle", registry=r
        )
        self.pool_gauges = {
            name: Gauge(f"mcp_db_pool_{name}", help_text, registry=r)
            for name, help_text in (
                ("size", "Configured pool_size"),
                ("limit", "pool_size + max_overflow"),
                ("checked_out", "Connections checked out now"),
                ("overflow", "Overflow connections in use now"),
                ("waiters", "Callers waiting for a connection now"),
                ("executor_queue", "Jobs waiting for an executor thread now"),
            )
        }
        self.pool_counters = {
            name: Gauge(f"mcp_db_pool_{name}", help_text, registry=r)
            for name, help_text in (
                ("timeouts_total", "Pool checkouts that timed out"),
                ("wait_seconds_total", "Time spent waiting for connections"),
                ("exhausted_seconds_total", "Time with every connection checked out"),
            )
        }

    def observe_session(self, event: str, session_id: str, kind: str, reason: str) -> None:
        """Count a session created (by transport) or removed (by reason): a registry session listener."""
        if event == "created":
            self._child(self.created, "transport", kind).inc()
        elif event == "removed":
            self._child(self.removed, "reason", reason).inc()

    def _child(self, metric: Counter, label: str, value: str) -> Any:
        """``metric.labels(label=value)``, looked up once per value (sessions come and go by the thousand)."""
        key = (id(metric), value)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(**{label: value})
        return child

    def observe_cycle(self, record: CycleRecord) -> None:
        """Account one cycle record."""
        self.cycles.inc()
        for phase, ms in (
            ("expiry", record.expiry_ms),
            ("phase1", record.phase1_ms),
            ("phase2", record.phase2_ms),
            ("total", record.total_ms),
        ):
            self.cycle_seconds.labels(phase=phase).observe(ms / 1000.0)
        self.refresh_errors.inc(record.refresh_errors)
        self.max_inflight.set(record.max_inflight)

    def observe_pool(self, snap: PoolSnapshot, sessions_local: int) -> None:
        """Set the pool gauges from a snapshot (called on each scrape)."""
        self.sessions_local.set(sessions_local)
        for name in ("checked_out", "overflow", "waiters", "executor_queue", "limit"):
            self.pool_gauges[name].set(getattr(snap, name))
        self.pool_gauges["size"].set(snap.pool_size)
        self.pool_counters["timeouts_total"].set(snap.timeouts_total)
        self.pool_counters["wait_seconds_total"].set(snap.wait_ms_total / 1000.0)
        self.pool_counters["exhausted_seconds_total"].set(snap.exhausted_seconds)
