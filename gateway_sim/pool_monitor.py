"""Pool gauges from SQLAlchemy's pool events and API, plus the thread driver's executor queue.

Counters are cumulative so an observer can difference two snapshots; peaks are kept per window
(one window per cleanup cycle) and since start.
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import Session
from sqlalchemy.pool import Pool

# Upper bounds (ms) of the connection-wait histogram; the last bucket is open-ended.
WAIT_BUCKETS_MS: tuple[float, ...] = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000,
                                      30000, float("inf"))


@dataclass(frozen=True)
class PoolWindow:
    """Peaks and waits seen during one window (a cleanup cycle)."""

    checked_out_peak: int
    overflow_peak: int
    waiters_peak: int
    wait_ms_max: float
    wait_ms_p95: float
    acquisitions: int
    timeouts: int
    executor_queue_peak: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PoolSnapshot:
    """The pool right now, with cumulative counters since the monitor started."""

    pool_size: int
    max_overflow: int
    limit: int
    checked_out: int
    overflow: int
    waiters: int
    executor_queue: int
    executor_threads: int
    timeouts_total: int
    acquisitions_total: int
    connects_total: int
    invalidations_total: int
    wait_ms_total: float
    checked_out_seconds: float
    exhausted_seconds: float
    uptime_seconds: float
    wait_histogram: tuple[int, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def histogram_percentile(counts: list[int] | tuple[int, ...], q: float,
                         bounds: tuple[float, ...] = WAIT_BUCKETS_MS) -> float:
    """The ``q``-th percentile from bucket counts: the upper bound of the bucket it falls in (finite)."""
    total = sum(counts)
    if total == 0:
        return 0.0
    target = q / 100.0 * total
    running = 0
    for bound, count in zip(bounds, counts, strict=True):
        running += count
        if running >= target:
            return bound if bound != float("inf") else bounds[-2]
    return bounds[-2]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; 0.0 for an empty list."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100.0 * len(ordered) + 0.5)))
    return float(ordered[rank - 1])


class PoolMonitor:
    """Watches one SQLAlchemy pool through its ``checkout``/``checkin``/``connect``/``invalidate`` events."""

    def __init__(self, pool: Pool, pool_size: int, max_overflow: int, executor_threads: int = 0) -> None:
        self.pool = pool
        self.pool_size = pool_size
        self.max_overflow = max_overflow
        self.limit = pool_size + max_overflow
        self.executor_threads = executor_threads
        self._lock = threading.Lock()
        self._started = time.perf_counter()
        self._checked_out = 0
        self._waiters = 0
        self._executor_queue = 0
        self._timeouts = 0
        self._acquisitions = 0
        self._connects = 0
        self._invalidations = 0
        self._wait_total_ms = 0.0
        self._wait_counts = [0] * len(WAIT_BUCKETS_MS)
        self._last_change = self._started
        self._checked_out_seconds = 0.0
        self._exhausted_seconds = 0.0
        self._reset_window()
        event.listen(pool, "checkout", self._on_checkout)
        event.listen(pool, "checkin", self._on_checkin)
        event.listen(pool, "connect", self._on_connect)
        event.listen(pool, "invalidate", self._on_invalidate)

    def detach(self) -> None:
        """Remove the event listeners."""
        for name, fn in (
            ("checkout", self._on_checkout),
            ("checkin", self._on_checkin),
            ("connect", self._on_connect),
            ("invalidate", self._on_invalidate),
        ):
            if event.contains(self.pool, name, fn):
                event.remove(self.pool, name, fn)

    # -- integrals ---------------------------------------------------------------------------
    def _advance(self, now: float) -> None:
        span = now - self._last_change
        self._checked_out_seconds += span * self._checked_out
        if self._checked_out >= self.limit:
            self._exhausted_seconds += span
        self._last_change = now

    # -- pool events -------------------------------------------------------------------------
    def _on_checkout(self, dbapi_conn: Any, record: Any, proxy: Any) -> None:
        with self._lock:
            self._advance(time.perf_counter())
            self._checked_out += 1
            self._w_checked_out_peak = max(self._w_checked_out_peak, self._checked_out)
            self._w_overflow_peak = max(self._w_overflow_peak, self._checked_out - self.pool_size)

    def _on_checkin(self, dbapi_conn: Any, record: Any) -> None:
        with self._lock:
            self._advance(time.perf_counter())
            self._checked_out = max(0, self._checked_out - 1)

    def _on_connect(self, dbapi_conn: Any, record: Any) -> None:
        with self._lock:
            self._connects += 1

    def _on_invalidate(self, dbapi_conn: Any, record: Any, exception: BaseException | None) -> None:
        with self._lock:
            self._invalidations += 1

    # -- acquisition (waiters, wait time, timeouts) ------------------------------------------
    def _wait_started(self) -> float:
        with self._lock:
            self._waiters += 1
            self._w_waiters_peak = max(self._w_waiters_peak, self._waiters)
        return time.perf_counter()

    def _wait_ended(self, started: float, timed_out: bool) -> None:
        waited = (time.perf_counter() - started) * 1000.0
        with self._lock:
            self._waiters -= 1
            self._acquisitions += 1
            self._wait_total_ms += waited
            self._wait_counts[bisect.bisect_left(WAIT_BUCKETS_MS, waited)] += 1
            self._w_waits.append(waited)
            self._w_acquisitions += 1
            if timed_out:
                self._timeouts += 1
                self._w_timeouts += 1

    def wait_started(self) -> float:
        """A caller starts waiting for a connection (for checkouts made inside code we do not own)."""
        return self._wait_started()

    def wait_ended(self, started: float, timed_out: bool = False) -> None:
        """That caller got its connection (or timed out)."""
        self._wait_ended(started, timed_out)

    def wait_abandoned(self) -> None:
        """That caller ended without checking a connection out: not a wait."""
        with self._lock:
            self._waiters = max(0, self._waiters - 1)

    def acquire(self, session: Session) -> None:
        """Check a connection out for ``session`` and time the wait (a sync call)."""
        started = self._wait_started()
        timed_out = False
        try:
            session.connection()
        except exc.TimeoutError:
            timed_out = True
            raise
        finally:
            self._wait_ended(started, timed_out)

    async def acquire_async(self, engine: AsyncEngine) -> AsyncConnection:
        """Check a connection out of an asyncio engine and time the wait."""
        started = self._wait_started()
        timed_out = False
        try:
            return await engine.connect()
        except exc.TimeoutError:
            timed_out = True
            raise
        finally:
            self._wait_ended(started, timed_out)

    async def acquire_pooled_async(self, pool: Any) -> Any:
        """Check a connection straight out of an asyncio engine's pool (its ``_ConnectionFairy``), timed."""
        from sqlalchemy.util.concurrency import greenlet_spawn

        started = self._wait_started()
        timed_out = False
        try:
            return await greenlet_spawn(pool.connect)
        except exc.TimeoutError:
            timed_out = True
            raise
        finally:
            self._wait_ended(started, timed_out)

    def dequeue(self) -> None:
        """Called on the executor thread when the job starts running."""
        with self._lock:
            self._executor_queue = max(0, self._executor_queue - 1)

    def enqueue(self) -> None:
        """Called on the event loop when a job is submitted to the executor."""
        with self._lock:
            self._executor_queue += 1
            self._w_executor_queue_peak = max(self._w_executor_queue_peak, self._executor_queue)

    # -- windows and snapshots ---------------------------------------------------------------
    def _reset_window(self) -> None:
        self._w_checked_out_peak = self._checked_out
        self._w_overflow_peak = max(0, self._checked_out - self.pool_size)
        self._w_waiters_peak = self._waiters
        self._w_waits: list[float] = []
        self._w_acquisitions = 0
        self._w_timeouts = 0
        self._w_executor_queue_peak = self._executor_queue

    def take_window(self) -> PoolWindow:
        """Return the window's peaks and start a new window."""
        with self._lock:
            window = PoolWindow(
                checked_out_peak=self._w_checked_out_peak,
                overflow_peak=max(0, self._w_overflow_peak),
                waiters_peak=self._w_waiters_peak,
                wait_ms_max=round(max(self._w_waits, default=0.0), 3),
                wait_ms_p95=round(percentile(self._w_waits, 95), 3),
                acquisitions=self._w_acquisitions,
                timeouts=self._w_timeouts,
                executor_queue_peak=self._w_executor_queue_peak,
            )
            self._reset_window()
        return window

    def snapshot(self) -> PoolSnapshot:
        """The pool's current gauges and cumulative counters."""
        with self._lock:
            now = time.perf_counter()
            self._advance(now)
            checked_out = self._checked_out
            return PoolSnapshot(
                pool_size=self.pool_size,
                max_overflow=self.max_overflow,
                limit=self.limit,
                checked_out=checked_out,
                overflow=max(0, checked_out - self.pool_size),
                waiters=self._waiters,
                executor_queue=self._executor_queue,
                executor_threads=self.executor_threads,
                timeouts_total=self._timeouts,
                acquisitions_total=self._acquisitions,
                connects_total=self._connects,
                invalidations_total=self._invalidations,
                wait_ms_total=round(self._wait_total_ms, 3),
                checked_out_seconds=round(self._checked_out_seconds, 6),
                exhausted_seconds=round(self._exhausted_seconds, 6),
                uptime_seconds=round(now - self._started, 6),
                wait_histogram=tuple(self._wait_counts),
            )
