"""The session registry and its cleanup cycle: the real two-phase, bounded-gather algorithm.

Each cycle:
  expiry  delete rows idle longer than the TTL (database clock on both sides);
  phase 1 sequential ``await transport.is_connected()`` for every local session, removing the gone;
  phase 2 refresh ``last_accessed`` of the connected ones with the chosen strategy. A refresh that
          raises is logged and the session kept; one that finds no row removes the session locally.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from gateway_sim import store as st
from gateway_sim.config import GatewayConfig, RegistryConfig
from gateway_sim.metrics import CpuBetweenCycles, CycleLog, CycleRecord, GatewayMetrics
from gateway_sim.pool_monitor import PoolMonitor
from gateway_sim.registry_api import SessionListener, notify, session_accounting
from gateway_sim.store import SessionStore, open_store
from gateway_sim.transports import Transport

log = logging.getLogger(__name__)

RefreshResult = bool | BaseException
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class RefreshPlan:
    """What a strategy needs: how to refresh one id, many ids at once, and its bounds."""

    refresh_one: Callable[[str], Awaitable[bool]]
    refresh_many: Callable[[Sequence[str]], Awaitable[set[str]]]
    max_concurrent: int
    batch_size: int


async def refresh_sequential(ids: Sequence[str], plan: RefreshPlan) -> list[RefreshResult]:
    """One refresh after another: the loop before parallel cleanup."""
    results: list[RefreshResult] = []
    for session_id in ids:
        try:
            results.append(await plan.refresh_one(session_id))
        except Exception as exc:
            results.append(exc)
    return results


async def refresh_gather(ids: Sequence[str], plan: RefreshPlan) -> list[RefreshResult]:
    """All refreshes at once with ``asyncio.gather`` (unbounded)."""
    return list(await asyncio.gather(*(plan.refresh_one(i) for i in ids), return_exceptions=True))


async def gather_bounded(items: Sequence[T], limit: int, call: Callable[[T], Awaitable[R]]) -> list[R | BaseException]:
    """``call`` on every item with ``asyncio.gather(…, return_exceptions=True)``, at most ``limit`` in flight."""
    semaphore = asyncio.Semaphore(limit)

    async def bounded(item: T) -> R:
        async with semaphore:
            return await call(item)

    return list(await asyncio.gather(*(bounded(item) for item in items), return_exceptions=True))


async def refresh_bounded(ids: Sequence[str], plan: RefreshPlan) -> list[RefreshResult]:
    """``asyncio.gather`` with at most ``max_concurrent`` refreshes in flight (a semaphore)."""
    return await gather_bounded(ids, plan.max_concurrent, plan.refresh_one)


async def refresh_batched(ids: Sequence[str], plan: RefreshPlan) -> list[RefreshResult]:
    """One ``UPDATE … = ANY(:ids) RETURNING`` per chunk of ``batch_size`` ids, the chunks gathered with at most
    ``max_concurrent`` in flight: one round trip per ``batch_size × max_concurrent`` ids. A failed chunk fails
    its own ids only."""
    chunks = [ids[start : start + plan.batch_size] for start in range(0, len(ids), plan.batch_size)]
    found = await gather_bounded(chunks, plan.max_concurrent, plan.refresh_many)
    results: list[RefreshResult] = []
    for chunk, rows in zip(chunks, found, strict=True):
        if isinstance(rows, BaseException):
            results.extend(rows for _ in chunk)
        else:
            results.extend(i in rows for i in chunk)
    return results


STRATEGY_FUNCTIONS: dict[str, Callable[[Sequence[str], RefreshPlan], Awaitable[list[RefreshResult]]]] = {
    "sequential": refresh_sequential,
    "gather": refresh_gather,
    "bounded": refresh_bounded,
    "batched": refresh_batched,
}



def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


class SessionRegistry:
    """Local sessions of one gateway process, their rows in Postgres, and the cleanup cycle.

    The ``sim`` implementation of :class:`gateway_sim.registry_api.Registry`.
    """

    def __init__(
        self,
        store: SessionStore,
        config: RegistryConfig,
        cycle_log: CycleLog | None = None,
        metrics: GatewayMetrics | None = None,
        worker_id: str = "0",
    ) -> None:
        self.store = store
        self.config = config
        self.cycle_log = cycle_log or CycleLog()
        self.metrics = metrics
        self.worker_id = worker_id
        self.sessions: dict[str, Transport] = {}
        self.created: Counter[str] = Counter()
        self.removed: Counter[str] = Counter()
        self.listeners: list[SessionListener] = []
        self._cycle_no = 0
        self._cycle_lock = asyncio.Lock()
        self._cycle_ended = asyncio.Event()
        self._cpu_between = CpuBetweenCycles()
        self._inflight = 0
        self._inflight_peak = 0
        self._pending_deletes: set[str] = set()  # rows whose delete failed (database down): retried each cycle

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def monitor(self) -> PoolMonitor:
        """Gauges of the store's pool."""
        return self.store.monitor

    async def start(self) -> None:
        """Nothing to open: the gateway creates this registry's tables with its own schema."""

    async def stop(self) -> None:
        """Dispose of the store's engine and executor."""
        await self.store.close()

    def describe(self) -> dict[str, Any]:
        """The knobs this registry runs with."""
        return {"registry": "sim", "strategy": self.config.strategy, "driver": self.store.config.driver,
                "executor_threads": self.store.executor_threads}

    async def hold_connections(self, count: int, seconds: float) -> int:
        """The pool-exhaust fault: hold ``count`` pooled connections for ``seconds``."""
        return await self.store.hold_connections(count, seconds)

    async def touch(self, session_id: str) -> bool:
        """A request arrived: one UPDATE of ``last_accessed``; False (and the session removed) if no row."""
        if await self.store.touch(session_id):
            return True
        await self.remove_session(session_id, "missing", delete_row=False)
        return False

    async def refresh_one(self, session_id: str) -> bool:
        """The phase-2 refresh of one session (calibration)."""
        return await self.store.refresh(session_id)

    # -- sessions ------------------------------------------------------------------------------
    def get(self, session_id: str) -> Transport | None:
        """The local transport of ``session_id``, if this process holds it."""
        return self.sessions.get(session_id)

    def _emit(self, event: str, session_id: str, kind: str, reason: str) -> None:
        notify(self.listeners, event, session_id, kind, reason)

    async def add_session(self, transport: Transport, data: str | None = None) -> str:
        """Register a new session (128-bit random id) and insert its row."""
        session_id = secrets.token_hex(16)
        await self.store.add(session_id, data)
        self._register(session_id, transport)
        return session_id

    def _register(self, session_id: str, transport: Transport) -> None:
        self.sessions[session_id] = transport
        self.created[transport.kind] += 1
        if self.metrics:
            self.metrics.created.labels(transport=transport.kind).inc()
        self._emit("created", session_id, transport.kind, "")

    async def add_sessions(self, transports: Sequence[Transport]) -> list[str]:
        """Register many sessions with one multi-row insert (benchmarks, warm starts)."""
        session_ids = [secrets.token_hex(16) for _ in transports]
        if session_ids:
            await self.store.run(st.insert_sessions, session_ids)
        for session_id, transport in zip(session_ids, transports, strict=True):
            self._register(session_id, transport)
        return session_ids

    async def remove_session(self, session_id: str, reason: str, *, delete_row: bool = True,
                             grouped: bool = True) -> bool:
        """Close the transport and delete the row; False if this process did not hold the session.

        ``grouped=False``: the delete does not wait for a ``--write-batch-ms`` window (see :meth:`SessionStore.remove`).

        A failed row delete is logged and retried at the next cycle: the client is gone either way.
        """
        transport = self.sessions.pop(session_id, None)
        if transport is None:
            return False
        self.removed[reason] += 1
        if self.metrics:
            self.metrics.removed.labels(reason=reason).inc()
        self._emit("removed", session_id, transport.kind, reason)
        try:
            await transport.disconnect()
        except Exception:
            log.exception("closing transport of %s failed", session_id)
        if delete_row:
            try:
                await self.store.remove(session_id, grouped=grouped)
            except Exception as exc:
                self._pending_deletes.add(session_id)
                log.warning("deleting row of %s failed (retried next cycle): %s", session_id, exc)
        return True

    def accounting(self) -> dict[str, Any]:
        """created = removed + active, by transport kind and by removal reason."""
        return session_accounting(self.created, self.removed, self.sessions)

    # -- cleanup -------------------------------------------------------------------------------
    async def _counted(self, refresh: Awaitable[T]) -> T:
        """Await one refresh statement, keeping the count (and peak) of those in flight."""
        self._inflight += 1
        self._inflight_peak = max(self._inflight_peak, self._inflight)
        try:
            return await refresh
        finally:
            self._inflight -= 1

    async def _refresh_one(self, session_id: str) -> bool:
        return await self._counted(self.store.refresh(session_id))

    async def _refresh_many(self, session_ids: Sequence[str]) -> set[str]:
        return await self._counted(self.store.refresh_many(session_ids))

    async def _retry_deletes(self) -> None:
        if self._pending_deletes:
            session_ids = sorted(self._pending_deletes)
            await self.store.run(st.delete_sessions, session_ids)
            self._pending_deletes.difference_update(session_ids)

    async def _expire(self) -> int:
        await self._retry_deletes()
        expired = await self.store.run(st.expire_sessions, self.config.session_ttl)
        for session_id in expired:
            await self.remove_session(session_id, "expired", delete_row=False)
        return len(expired)

    async def refresh_connected(self, session_ids: Sequence[str]) -> list[RefreshResult]:
        """Phase 2: refresh ``session_ids`` with the configured strategy; one result per id."""
        if not session_ids:
            return []
        plan = RefreshPlan(
            self._refresh_one, self._refresh_many, self.config.max_concurrent, self.config.batch_size
        )
        return await STRATEGY_FUNCTIONS[self.config.strategy](session_ids, plan)

    async def phase1(self) -> tuple[list[str], int, int]:
        """Phase 1 alone (see :meth:`_phase1`)."""
        return await self._phase1()

    async def _phase1(self) -> tuple[list[str], int, int]:
        """Check every local persistent session; remove the gone ones. ``(connected, checked, removed)``.

        ``per-session`` (upstream's way) deletes each gone session's row as it is found; ``batched`` closes
        their transports as found and deletes all their rows in one statement at the end.
        """
        connected: list[str] = []
        gone: list[str] = []
        checked = removed = 0
        batched = self.config.phase1_removal == "batched"
        for session_id, transport in list(self.sessions.items()):
            if not transport.persistent:
                continue
            checked += 1
            if await transport.is_connected():
                connected.append(session_id)
            elif await self.remove_session(session_id, "disconnected", delete_row=not batched, grouped=False):
                removed += 1
                gone.append(session_id)
        if batched and gone:
            try:
                await self.store.run(st.delete_gone_sessions, gone)
            except Exception as exc:
                self._pending_deletes.update(gone)
                log.warning("deleting %d rows of gone sessions failed (retried next cycle): %s", len(gone), exc)
        return connected, checked, removed

    async def run_cleanup_cycle(self) -> CycleRecord:
        """Run one cleanup cycle and record it."""
        async with self._cycle_lock:
            return await self._cycle()

    async def _cycle(self) -> CycleRecord:
        monitor = self.store.monitor
        monitor.take_window()
        self._cycle_no += 1
        self._inflight_peak = 0
        started_at = _utc_now()
        cpu_between = self._cpu_between.at_start()
        sessions_local = len(self.sessions)
        error: str | None = None
        t0 = time.perf_counter()

        expired = 0
        try:
            expired = await self._expire()
        except Exception as exc:
            error = f"expiry sweep failed: {type(exc).__name__}: {exc}"
            log.warning(error)
        t1 = time.perf_counter()

        connected, checked, removed_disconnected = await self._phase1()
        t2 = time.perf_counter()

        results = await self.refresh_connected(connected)
        refreshed = removed_missing = errors = 0
        for session_id, result in zip(connected, results, strict=True):
            if isinstance(result, BaseException):
                errors += 1
                log.error("error refreshing session %s: %s: %s", session_id, type(result).__name__, result)
            elif result:
                refreshed += 1
            elif await self.remove_session(session_id, "missing", delete_row=False):
                removed_missing += 1
        t3 = time.perf_counter()

        record = CycleRecord(
            worker=self.worker_id,
            cycle=self._cycle_no,
            started_at=started_at,
            strategy=self.config.strategy,
            phase1_removal=self.config.phase1_removal,
            driver=self.store.config.driver,
            max_concurrent=self.config.max_concurrent,
            expiry_ms=_ms(t1 - t0),
            phase1_ms=_ms(t2 - t1),
            phase2_ms=_ms(t3 - t2),
            total_ms=_ms(t3 - t0),
            sessions_local=sessions_local,
            checked=checked,
            removed_disconnected=removed_disconnected,
            refreshed=refreshed,
            removed_missing=removed_missing,
            refresh_errors=errors,
            expired=expired,
            max_inflight=self._inflight_peak,
            pool=monitor.take_window(),
            pool_size=self.store.config.pool_size,
            max_overflow=self.store.config.max_overflow,
            executor_threads=self.store.executor_threads,
            error=error,
            cpu_between_cycles=cpu_between,
        )
        self._cpu_between.at_end()
        self._cycle_ended.set()
        self._cycle_ended = asyncio.Event()
        self.cycle_log.add(record)
        if self.metrics:
            self.metrics.observe_cycle(record)
        return record

    async def between_cycles(self, work: Callable[[], Awaitable[T]], timeout: float) -> T:
        """Run ``work`` as soon as the next cleanup cycle ends, with no cycle starting until it is done.

        Raises :class:`TimeoutError` when no cycle ends within ``timeout`` seconds.
        """
        await asyncio.wait_for(self._cycle_ended.wait(), timeout)
        async with self._cycle_lock:
            return await work()

    async def run_forever(self) -> None:
        """Run a cleanup cycle every ``cleanup_interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.config.cleanup_interval)
            try:
                await self.run_cleanup_cycle()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cleanup cycle failed")

    async def close(self) -> None:
        """Graceful shutdown: close every local session and delete their rows in one statement."""
        session_ids = list(self.sessions)
        for session_id in session_ids:
            await self.remove_session(session_id, "shutdown", delete_row=False)
        session_ids += sorted(self._pending_deletes)
        if session_ids:
            try:
                await self.store.run(st.delete_sessions, session_ids)
            except Exception as exc:
                log.warning("deleting %d rows at shutdown failed: %s", len(session_ids), exc)


def create(config: GatewayConfig) -> SessionRegistry:
    """The ``sim`` registry factory: a store of its own on ``config.store`` and the cleanup of ``config.registry``."""
    cycles = CycleLog(history=config.cycle_history, path=config.cycle_log)
    return SessionRegistry(open_store(config.store), config.registry, cycles, worker_id=config.worker_id)
