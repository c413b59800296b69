"""Poll the gateways and Postgres during a run: cycle records, pool gauges, sessions, pg_stat_activity."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from gateway_sim import store as st
from gateway_sim.admin_client import AdminClient, AdminError
from harness.sut.dbsync import sync_session

log = logging.getLogger(__name__)


@dataclass
class Collected:
    """Everything observed during a run (times in seconds since the collector started)."""

    started_at: float = field(default_factory=time.time)
    cycles: list[dict[str, Any]] = field(default_factory=list)
    pool_samples: list[dict[str, Any]] = field(default_factory=list)
    pg_samples: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    first_pool: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_pool: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    poll_errors: int = 0
    max_connections: int | None = None


class Collector:
    """A background thread that samples every ``interval`` seconds until stopped."""

    def __init__(self, gateway_urls: list[str], db_url: str | None, interval: float = 1.0) -> None:
        self.gateway_urls = list(gateway_urls)
        self.db_url = db_url
        self.interval = interval
        self.data = Collected()
        self._since = dict.fromkeys(self.gateway_urls, 0)
        self._clients = {url: AdminClient(url) for url in self.gateway_urls}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="collector", daemon=True)

    def now(self) -> float:
        """Seconds since the collector started."""
        return time.time() - self.data.started_at

    def mark(self, kind: str, **detail: Any) -> None:
        """Record a timeline event (latency change, fault, phase of the run)."""
        with self._lock:
            self.data.events.append({"t": round(self.now(), 3), "kind": kind, **detail})

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> Collected:
        """Take a final sample, stop the thread, and return what was collected."""
        self._stop.set()
        self._thread.join(timeout=30)
        self.sample()
        return self.data

    def latest(self) -> dict[str, Any]:
        """A consistent view for the progress display."""
        with self._lock:
            sessions = sum(s.get("active", 0) for s in self.data.last_sessions.values())
            checked_out = sum(p.get("checked_out", 0) for p in self.data.last_pool.values())
            limit = sum(p.get("limit", 0) for p in self.data.last_pool.values())
            waiters = sum(p.get("waiters", 0) for p in self.data.last_pool.values())
            last_cycle = self.data.cycles[-1] if self.data.cycles else None
            return {"sessions": sessions, "checked_out": checked_out, "limit": limit, "waiters": waiters,
                    "cycles": len(self.data.cycles), "last_cycle": last_cycle,
                    "pg": self.data.pg_samples[-1] if self.data.pg_samples else None}

    def _loop(self) -> None:
        if not self.db_url:  # a gateway measured without its database: no pg_stat_activity
            while not self._stop.wait(self.interval):
                self.sample()
            return
        with sync_session(self.db_url, application_name="mcp-loadtest-sampler") as session:
            while not self._stop.is_set():
                started = time.monotonic()
                self.sample()
                self._sample_pg(session)
                self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def sample(self) -> None:
        """Poll every gateway once."""
        for url in self.gateway_urls:
            try:
                payload = self._clients[url].cycles(since=self._since[url])
            except (AdminError, OSError, ValueError) as exc:
                with self._lock:
                    self.data.poll_errors += 1
                log.debug("polling %s failed: %s", url, exc)
                continue
            self._absorb(url, payload)

    def _absorb(self, url: str, payload: dict[str, Any]) -> None:
        worker = str(payload.get("worker", url))
        t = round(self.now(), 3)
        pool = dict(payload.get("pool", {}))
        sessions = dict(payload.get("sessions", {}))
        with self._lock:
            for cycle in payload.get("cycles", []):
                self._since[url] = max(self._since[url], int(cycle["cycle"]))
                self.data.cycles.append({**cycle, "t": t, "worker": worker})
            self.data.first_pool.setdefault(worker, pool)
            self.data.last_pool[worker] = pool
            self.data.last_sessions[worker] = sessions
            self.data.pool_samples.append({
                "t": t, "worker": worker,
                **{k: pool.get(k) for k in ("checked_out", "overflow", "waiters", "executor_queue", "limit",
                                            "timeouts_total", "exhausted_seconds", "checked_out_seconds",
                                            "uptime_seconds")},
                "sessions_active": sessions.get("active", 0),
                "sessions_created": sessions.get("created", 0),
                "sessions_removed": sessions.get("removed", 0),
            })

    def _sample_pg(self, session: Any) -> None:
        try:
            activity = st.db_activity(session)
            session.rollback()
        except Exception as exc:  # a restarting database must not stop the sampling
            session.rollback()
            with self._lock:
                self.data.poll_errors += 1
            log.debug("sampling pg_stat_activity failed: %s", exc)
            return
        by_state = activity["by_state"]
        with self._lock:
            if self.data.max_connections is None:
                self.data.max_connections = int(activity["max_connections"])
            self.data.pg_samples.append({"t": round(self.now(), 3), "total": sum(by_state.values()), **by_state})
