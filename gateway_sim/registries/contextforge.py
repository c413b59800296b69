"""``--registry contextforge``: ContextForge's own ``mcpgateway.cache.session_registry.SessionRegistry``
(database backend) hosted in this gateway as it is, measured from outside its code.

Loaded only in a gateway process running in the environment ``python -m harness contextforge setup`` builds
(Python >= 3.12). Before ``mcpgateway`` is imported, its settings are set through its environment variables from
our knobs (``DATABASE_URL`` with the ``postgresql+psycopg`` driver, ``DB_POOL_SIZE``, ``DB_MAX_OVERFLOW``,
``DB_POOL_TIMEOUT``, ``CACHE_TYPE=database``, ``EMAIL_AUTH_ENABLED=false`` and the two secrets it validates at
import, generated here and never printed or written). Its engine, pool, pre-ping and other settings are then
its own. Its tables are created from its own models.

Each cycle is upstream's expired-row cleanup followed by its ``_cleanup_database_sessions(max_concurrent=…)``;
its own 300 s loop is not started. What a :class:`~gateway_sim.metrics.CycleRecord` holds is observed from
outside:

- phase 1: the ``is_connected()`` calls our transports see (through :class:`UpstreamTransport`), ending when
  its first refresh is handed to the executor;
- phase 2: its refreshes (``asyncio.to_thread(self._refresh_session_db, id)``) as jobs of the loop's default
  executor, which is ours (:class:`WatchedExecutor`): jobs in flight, their results and exceptions, and the
  executor's queue; removals as the ``disconnect()`` calls our transports see;
- the pool: SQLAlchemy pool events on its engine (:class:`~gateway_sim.pool_monitor.PoolMonitor`), plus the
  wait of each executor job until its thread checks a connection out.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, inspect, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from gateway_sim.config import GatewayConfig, StoreConfig, default_executor_threads
from gateway_sim.metrics import CpuBetweenCycles, CycleLog, CycleRecord
from gateway_sim.pool_monitor import PoolMonitor
from gateway_sim.registry_api import SessionListener, notify, session_accounting
from gateway_sim.store import SCHEMA_LOCK_KEY, open_store
from gateway_sim.transports import Transport

log = logging.getLogger(__name__)

PACKAGE = "mcp-contextforge-gateway"


def upstream_environment(config: GatewayConfig) -> dict[str, str]:
    """Upstream's settings from our knobs (secrets excluded): what :func:`configure_environment` sets."""
    url = make_url(config.store.db_url).set(drivername="postgresql+psycopg")
    url = url.update_query_dict({"application_name": config.store.application_name})
    values = {
        "DATABASE_URL": url.render_as_string(hide_password=False),
        "DB_POOL_SIZE": str(config.store.pool_size),
        "DB_MAX_OVERFLOW": str(config.store.max_overflow),
        "DB_POOL_TIMEOUT": str(max(1, math.ceil(config.store.pool_timeout))),  # an int setting upstream
        "CACHE_TYPE": "database",
        "EMAIL_AUTH_ENABLED": "false",
        "MCPGATEWAY_UI_ENABLED": "false",
        "MCPGATEWAY_ADMIN_API_ENABLED": "false",
        "SESSION_TTL": str(max(1, math.ceil(config.registry.session_ttl))),
    }
    if config.store.pool_pre_ping:
        values["DB_POOL_PRE_PING"] = "true"  # otherwise its own "auto": on without PgBouncer
    return values


def configure_environment(config: GatewayConfig) -> None:
    """Set upstream's environment variables; must run before ``mcpgateway`` is first imported."""
    os.environ.update(upstream_environment(config))
    for name in ("JWT_SECRET_KEY", "AUTH_ENCRYPTION_SECRET"):  # validated at import: >= 32 chars, high entropy
        os.environ[name] = secrets.token_urlsafe(48)


def upstream_version() -> str:
    """The installed ``mcp-contextforge-gateway`` version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PACKAGE)
    except PackageNotFoundError:
        return "unknown"


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


class UpstreamTransport:
    """One of our transports seen through upstream's transport interface (``async is_connected()``,
    ``async disconnect()``, ``async send_message()``), reporting each call to the adapter."""

    def __init__(self, inner: Transport, session_id: str, owner: ContextForgeRegistry) -> None:
        self.inner = inner
        self.session_id = session_id
        self._owner = owner
        self.reported_gone = False

    async def is_connected(self) -> bool:
        connected = await self.inner.is_connected()
        self.reported_gone = not connected
        self._owner._observe_check(connected)
        return connected

    async def disconnect(self) -> None:
        self._owner._observe_removed(self)
        await self.inner.disconnect()

    async def send_message(self, message: dict[str, Any]) -> None:
        await self.inner.send(message)


class CycleObservation:
    """What one cycle's calls looked like from outside (filled from the loop and from executor threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.phase = "expiry"
        self.checked = 0
        self.removed_disconnected = 0
        self.removed_missing = 0
        self.refreshed = 0
        self.refresh_missing = 0
        self.errors = 0
        self.inflight = 0
        self.inflight_peak = 0
        self.first_refresh_at: float | None = None
        self.expiry: asyncio.Future[Any] | None = None


class WatchedExecutor(ThreadPoolExecutor):
    """The loop's default executor (the one ``asyncio.to_thread`` uses), watched.

    Counts jobs waiting for a thread (the pool monitor's executor queue), times each job's wait for a pooled
    connection (from the job's start to the first checkout in its thread) and hands every job to
    ``on_submit``, which may return a callback for the job's future. ``max_workers=None`` is Python's default.
    """

    def __init__(self, max_workers: int | None, monitor: PoolMonitor,
                 on_submit: Callable[[Any], Callable[[Future[Any]], None] | None]) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix="contextforge-executor")
        self._monitor = monitor
        self._on_submit = on_submit
        self.waiting = threading.local()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        done = self._on_submit(fn)
        self._monitor.enqueue()
        future = super().submit(self._run, fn, *args, **kwargs)
        if done is not None:
            future.add_done_callback(done)
        return future

    def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self._monitor.dequeue()
        self.waiting.started = self._monitor.wait_started()
        try:
            return fn(*args, **kwargs)
        except sa_exc.TimeoutError:
            if self.waiting.started is not None:
                self._monitor.wait_ended(self.waiting.started, timed_out=True)
                self.waiting.started = None
            raise
        finally:
            if self.waiting.started is not None:  # the job checked nothing out: it did not wait
                self._monitor.wait_abandoned()
                self.waiting.started = None

    def checked_out(self) -> None:
        """A pool checkout happened on the current thread: the job's wait is over."""
        started = getattr(self.waiting, "started", None)
        if started is not None:
            self._monitor.wait_ended(started)
            self.waiting.started = None


def _job_function(fn: Any) -> Any:
    """The function ``asyncio.to_thread`` wrapped: ``functools.partial(context.run, func, *args)``."""
    if isinstance(fn, functools.partial) and fn.args:
        return fn.args[0]
    return fn


class ContextForgeRegistry:
    """Upstream's ``SessionRegistry`` behind :class:`gateway_sim.registry_api.Registry`."""

    def __init__(self, config: GatewayConfig) -> None:
        configure_environment(config)
        from mcpgateway import db as upstream_db  # import-time settings: after configure_environment
        from mcpgateway.cache.session_registry import SessionRegistry as UpstreamRegistry

        self.config = config
        self.worker_id = config.worker_id
        self.version = upstream_version()
        self._db = upstream_db
        self.upstream = UpstreamRegistry(backend="database", database_url=os.environ["DATABASE_URL"],
                                         session_ttl=max(1, math.ceil(config.registry.session_ttl)))
        self.engine = upstream_db.engine
        self.executor_threads = config.loop_executor_threads or default_executor_threads()
        pool = self.engine.pool
        self.monitor = PoolMonitor(pool, pool.size(), getattr(pool, "_max_overflow", config.store.max_overflow),
                                   executor_threads=self.executor_threads)
        # the gateway's own statements (fault knobs, pg_stat_activity) on a small engine of ours
        self.store = open_store(StoreConfig(db_url=config.store.db_url, driver="async", pool_size=2, max_overflow=2,
                                            application_name=f"mcp-loadtest-admin:{config.worker_id}"))
        self.cycle_log = CycleLog(history=config.cycle_history, path=config.cycle_log)
        self.listeners: list[SessionListener] = []
        self.created: Counter[str] = Counter()
        self.removed: Counter[str] = Counter()
        self._local: dict[str, Transport] = {}
        self._removing: dict[str, str] = {}
        self._cycle_no = 0
        self._cycle_lock = asyncio.Lock()
        self._cpu_between = CpuBetweenCycles()
        self._observation: CycleObservation | None = None
        self._executor: WatchedExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Install the watched default executor and create upstream's tables from its own models."""
        self._loop = asyncio.get_running_loop()
        self._executor = WatchedExecutor(self.config.loop_executor_threads, self.monitor, self._on_job)
        self._loop.set_default_executor(self._executor)
        event.listen(self.engine.pool, "checkout", self._on_checkout)
        await asyncio.to_thread(self._create_tables)

    def _create_tables(self) -> None:
        tables = [self._db.SessionRecord.__table__, self._db.SessionMessageRecord.__table__]
        with self.engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
            existing = inspect(conn)
            if existing.has_table("mcp_messages"):
                columns = {c["name"] for c in existing.get_columns("mcp_messages")}
                if "last_accessed" not in columns:
                    raise RuntimeError("mcp_sessions/mcp_messages exist but were not created from ContextForge's "
                                       "models; use a fresh database")
            self._db.Base.metadata.create_all(conn, tables=tables)

    async def close(self) -> None:
        """End every local session through upstream's ``remove_session`` (which deletes each row)."""
        for session_id in list(self._local):
            await self.remove_session(session_id, "shutdown")

    async def stop(self) -> None:
        """Upstream's shutdown, then release the engines."""
        try:
            await self.upstream.shutdown()
        finally:
            if event.contains(self.engine.pool, "checkout", self._on_checkout):
                event.remove(self.engine.pool, "checkout", self._on_checkout)
            self.monitor.detach()
            self.engine.dispose()
            await self.store.close()

    def describe(self) -> dict[str, Any]:
        """What upstream runs with."""
        return {"registry": "contextforge", "registry_version": self.version, "strategy": "bounded",
                "driver": "thread", "executor_threads": self.executor_threads,
                "pool_pre_ping": bool(getattr(self.engine.pool, "_pre_ping", False))}

    # -- observation hooks ---------------------------------------------------------------------
    def _on_checkout(self, dbapi_conn: Any, record: Any, proxy: Any) -> None:
        if self._executor is not None:
            self._executor.checked_out()

    def _on_job(self, fn: Any) -> Callable[[Future[Any]], None] | None:
        obs = self._observation
        if obs is None:
            return None
        func = _job_function(fn)
        name = getattr(func, "__name__", "")
        if name == "_refresh_session_db" and getattr(func, "__self__", None) is self.upstream:
            with obs.lock:
                if obs.first_refresh_at is None:
                    obs.first_refresh_at = time.perf_counter()
                    obs.phase = "refresh"
                obs.inflight += 1
                obs.inflight_peak = max(obs.inflight_peak, obs.inflight)
            return functools.partial(self._refresh_done, obs)
        if name == "_db_cleanup" and obs.expiry is not None:
            return functools.partial(self._expiry_done, obs.expiry)
        return None

    @staticmethod
    def _refresh_done(obs: CycleObservation, future: Future[Any]) -> None:
        with obs.lock:
            obs.inflight -= 1
            if future.cancelled() or future.exception() is not None:
                obs.errors += 1
            elif future.result():
                obs.refreshed += 1
            else:
                obs.refresh_missing += 1

    def _expiry_done(self, target: asyncio.Future[Any], future: Future[Any]) -> None:
        def settle() -> None:
            if target.done():
                return
            if future.cancelled():
                target.set_exception(asyncio.CancelledError())
            elif future.exception() is not None:
                target.set_exception(future.exception())  # type: ignore[arg-type]
            else:
                target.set_result(future.result())

        assert self._loop is not None
        self._loop.call_soon_threadsafe(settle)

    def _observe_check(self, connected: bool) -> None:
        obs = self._observation
        if obs is not None:
            obs.checked += 1

    def _observe_removed(self, transport: UpstreamTransport) -> None:
        session_id = transport.session_id
        inner = self._local.pop(session_id, None)
        if inner is None:
            return
        reason = self._removing.pop(session_id, None)
        obs = self._observation
        if reason is None:  # upstream removed it on its own, in a cycle
            reason = "disconnected" if transport.reported_gone else "missing"
            if obs is not None:
                if reason == "disconnected":
                    obs.removed_disconnected += 1
                else:
                    obs.removed_missing += 1
        self.removed[reason] += 1
        self._emit("removed", session_id, inner.kind, reason)

    def _emit(self, event_name: str, session_id: str, kind: str, reason: str) -> None:
        notify(self.listeners, event_name, session_id, kind, reason)

    # -- sessions ------------------------------------------------------------------------------
    @property
    def sessions(self) -> Mapping[str, Transport]:
        """The sessions this process holds (as upstream does: those it has not removed)."""
        return self._local

    def get(self, session_id: str) -> Transport | None:
        """The local transport of ``session_id``."""
        return self._local.get(session_id)

    async def add_session(self, transport: Transport, data: str | None = None) -> str:
        """A new id, registered through upstream's ``add_session`` (which inserts the row)."""
        session_id = secrets.token_hex(16)
        self._local[session_id] = transport
        self.created[transport.kind] += 1
        self._emit("created", session_id, transport.kind, "")
        await self.upstream.add_session(session_id, UpstreamTransport(transport, session_id, self))
        return session_id

    async def add_sessions(self, transports: Sequence[Transport]) -> list[str]:
        """One upstream ``add_session`` after another (upstream has no bulk insert)."""
        return [await self.add_session(t) for t in transports]

    async def remove_session(self, session_id: str, reason: str, *, delete_row: bool = True) -> bool:
        """Through upstream's ``remove_session`` (it always deletes the row; ``delete_row`` has no effect)."""
        if session_id not in self._local:
            return False
        self._removing[session_id] = reason
        try:
            await self.upstream.remove_session(session_id)
        finally:
            if self._removing.pop(session_id, None) is not None and session_id in self._local:
                # upstream did not hold it locally (no disconnect call): forget it here too
                inner = self._local.pop(session_id)
                self.removed[reason] += 1
                self._emit("removed", session_id, inner.kind, reason)
        return True

    async def touch(self, session_id: str) -> bool:
        """A request on the session: upstream's registry has no statement for that; the session is alive while
        upstream holds it."""
        return session_id in self._local

    async def refresh_one(self, session_id: str) -> bool:
        """Upstream's own refresh of one row, in a thread as its cycle runs it (calibration)."""
        return bool(await asyncio.to_thread(self.upstream._refresh_session_db, session_id))

    def accounting(self) -> dict[str, Any]:
        """created = removed + active, by transport kind and by removal reason."""
        return session_accounting(self.created, self.removed, self._local)

    async def hold_connections(self, count: int, seconds: float) -> int:
        """The pool-exhaust fault on upstream's engine: ``count`` connections checked out for ``seconds``."""
        loop = asyncio.get_running_loop()
        holder = ThreadPoolExecutor(max_workers=min(count, 64), thread_name_prefix="pool-exhaust")

        async def hold_one() -> None:
            conn = await loop.run_in_executor(holder, self.engine.connect)
            try:
                await asyncio.sleep(seconds)
            finally:
                await loop.run_in_executor(holder, conn.close)

        try:
            results = await asyncio.gather(*(hold_one() for _ in range(count)), return_exceptions=True)
        finally:
            holder.shutdown(wait=False)
        return sum(1 for result in results if result is None)

    # -- the cycle -----------------------------------------------------------------------------
    async def _expire(self, obs: CycleObservation) -> int:
        """One pass of upstream's ``_db_cleanup_task``: its expired-row delete, in its own thread job.

        The task calls ``self._cleanup_database_sessions()`` right after the delete; for this one pass an
        instance attribute shadows that method with a marker (the class's method is untouched), so the task
        stops there and our loop calls the real method with our ``max_concurrent``. The task then sleeps 300 s
        (600 s after an error) and is cancelled.
        """
        loop = asyncio.get_running_loop()
        reached = loop.create_future()
        obs.expiry = loop.create_future()

        async def marker() -> None:
            if not reached.done():
                reached.set_result(None)

        self.upstream._cleanup_database_sessions = marker  # type: ignore[method-assign]
        task = asyncio.create_task(self.upstream._db_cleanup_task(), name="contextforge-expiry")
        try:
            await asyncio.wait({reached, obs.expiry}, return_when=asyncio.FIRST_COMPLETED)
            deleted = await obs.expiry  # raises the delete's own error
            await asyncio.wait_for(reached, 10.0)
            return int(deleted or 0)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            del self.upstream._cleanup_database_sessions
            obs.expiry = None

    async def run_cleanup_cycle(self) -> CycleRecord:
        """Run one cycle and record it."""
        async with self._cycle_lock:
            return await self._cycle()

    async def _cycle(self) -> CycleRecord:
        self.monitor.take_window()
        self._cycle_no += 1
        obs = CycleObservation()
        self._observation = obs
        started_at = _utc_now()
        cpu_between = self._cpu_between.at_start()
        sessions_local = len(self._local)
        error: str | None = None
        t0 = time.perf_counter()
        expired = 0
        try:
            expired = await self._expire(obs)
        except Exception as exc:
            error = f"expiry sweep failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            log.warning(error)
        t1 = time.perf_counter()
        obs.phase = "check"
        try:
            await self.upstream._cleanup_database_sessions(max_concurrent=self.config.registry.max_concurrent)
        except Exception as exc:  # upstream catches per session; anything else is a failed cycle
            error = f"cleanup failed: {type(exc).__name__}: {exc}"
            log.warning(error)
        finally:
            self._observation = None
        t3 = time.perf_counter()
        t2 = obs.first_refresh_at if obs.first_refresh_at is not None else t3
        record = CycleRecord(
            worker=self.worker_id, cycle=self._cycle_no, started_at=started_at, strategy="bounded", driver="thread",
            max_concurrent=self.config.registry.max_concurrent, expiry_ms=_ms(t1 - t0), phase1_ms=_ms(t2 - t1),
            phase2_ms=_ms(t3 - t2), total_ms=_ms(t3 - t0), sessions_local=sessions_local, checked=obs.checked,
            removed_disconnected=obs.removed_disconnected, refreshed=obs.refreshed,
            removed_missing=obs.removed_missing, refresh_errors=obs.errors, expired=expired,
            max_inflight=obs.inflight_peak, pool=self.monitor.take_window(), pool_size=self.monitor.pool_size,
            max_overflow=self.monitor.max_overflow, executor_threads=self.executor_threads, error=error,
            cpu_between_cycles=cpu_between,
        )
        self._cpu_between.at_end()
        self.cycle_log.add(record)
        return record

    async def run_forever(self) -> None:
        """A cycle every ``cleanup_interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.config.registry.cleanup_interval)
            try:
                await self.run_cleanup_cycle()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cleanup cycle failed")


def create(config: GatewayConfig) -> ContextForgeRegistry:
    """The ``contextforge`` registry factory."""
    return ContextForgeRegistry(config)
