"""Tables and statements for the session store, and the two drivers that run them.

Each statement is written once, as a function of an :data:`Executor` (a synchronous ORM ``Session``
or ``Connection``). The ``thread`` driver runs it in an ORM Session on a synchronous engine (psycopg) in
a thread pool, as the real gateway does with ``asyncio.to_thread``; the ``async`` driver runs the very
same function on SQLAlchemy's asyncio engine (asyncpg) through ``AsyncConnection.run_sync``. The one
ORM-only statement is the thread driver's refresh (load the row, set ``last_accessed``, commit). On the async
driver the per-request statements (a session's insert, delete and touch) are Core statements compiled once
and run outside a transaction on the pooled asyncpg connection, one round trip each; the thread driver's
statements are the real gateway's.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    String,
    Text,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.util.concurrency import greenlet_spawn

from gateway_sim.config import StoreConfig
from gateway_sim.pool_monitor import PoolMonitor
from gateway_sim.settings import APPLICATION_PREFIX
from gateway_sim.write_batch import WriteBatcher

T = TypeVar("T")

Executor = Session | Connection
"""What the statements run on: an ORM ``Session`` (thread driver) or a ``Connection`` (async driver)."""


class Base(DeclarativeBase):
    """Declarative base of the gateway's tables."""


class SessionRow(Base):
    """One MCP session, as the real gateway stores it."""

    __tablename__ = "mcp_sessions"

    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_accessed: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    data: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (Index("ix_mcp_sessions_last_accessed", "last_accessed"),)


class MessageRow(Base):
    """A message queued for a session (the real gateway's cross-worker relay)."""

    __tablename__ = "mcp_messages"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("mcp_sessions.session_id", ondelete="CASCADE"), index=True
    )
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


# --- fault hooks: latency and errors injected inside Postgres -------------------------------------
# A one-row table every statement can read, so a change applies live to all connections, and a
# statement-level trigger on refreshes (UPDATE OF last_accessed): a batched UPDATE pays it once.
SKIP_FAULTS_SETTING = "mcp_loadtest.skip_faults"
"""A connection started with this setting ``on`` is exempt from the refresh trigger's injected faults."""

FAULT_HOOK_DDL: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS mcp_loadtest_knobs (
        id integer PRIMARY KEY CHECK (id = 1),
        latency_ms double precision NOT NULL DEFAULT 0,
        jitter_ms double precision NOT NULL DEFAULT 0,
        error_rate double precision NOT NULL DEFAULT 0
    )""",
    # statement_timeout_ms > 0: a refresh whose injected delay reaches it sleeps that long and is then
    # cancelled with SQLSTATE 57014 (query_canceled), as statement_timeout would; live, refreshes only.
    "ALTER TABLE mcp_loadtest_knobs ADD COLUMN IF NOT EXISTS statement_timeout_ms double precision NOT NULL DEFAULT 0",
    "INSERT INTO mcp_loadtest_knobs (id) VALUES (1) ON CONFLICT (id) DO NOTHING",
    f"""CREATE OR REPLACE FUNCTION mcp_loadtest_refresh_hook() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE k record; delay double precision := 0;
    BEGIN
        SELECT latency_ms, jitter_ms, error_rate, statement_timeout_ms INTO k FROM mcp_loadtest_knobs WHERE id = 1;
        -- a connection exempt from the faults (the CPU calibration's) does the same work up to here
        IF current_setting('{SKIP_FAULTS_SETTING}', true) = 'on' THEN
            RETURN NULL;
        END IF;
        IF k.error_rate > 0 AND random() < k.error_rate THEN
            RAISE EXCEPTION 'injected refresh fault' USING ERRCODE = 'XX001';
        END IF;
        IF k.latency_ms > 0 OR k.jitter_ms > 0 THEN
            delay := greatest(0, k.latency_ms + (random() * 2 - 1) * k.jitter_ms);
        END IF;
        IF k.statement_timeout_ms > 0 AND delay >= k.statement_timeout_ms THEN
            PERFORM pg_sleep(k.statement_timeout_ms / 1000.0);
            RAISE EXCEPTION 'canceling statement due to statement timeout (injected, % ms)', k.statement_timeout_ms
                USING ERRCODE = 'query_canceled';
        END IF;
        IF delay > 0 THEN
            PERFORM pg_sleep(delay / 1000.0);
        END IF;
        RETURN NULL;
    END $$""",
    "DROP TRIGGER IF EXISTS mcp_loadtest_refresh_delay ON mcp_sessions",
    """CREATE TRIGGER mcp_loadtest_refresh_delay BEFORE UPDATE OF last_accessed ON mcp_sessions
    FOR EACH STATEMENT EXECUTE FUNCTION mcp_loadtest_refresh_hook()""",
)

SCHEMA_LOCK_KEY = 727_001  # advisory lock: several gateway workers may create the schema at once
KNOB_DDL = FAULT_HOOK_DDL[:4]
"""The knobs table and the hook function: what does not need ``mcp_sessions`` to exist yet."""


def create_schema(session: Executor) -> None:
    """Create the tables and fault hooks if they are missing (safe for concurrent workers)."""
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
    Base.metadata.create_all(session.connection() if isinstance(session, Session) else session)
    for statement in FAULT_HOOK_DDL:
        session.execute(text(statement))
    session.commit()


def create_fault_knobs(session: Executor) -> None:
    """Create the fault knobs only (for a registry that creates ``mcp_sessions`` from its own model)."""
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
    for statement in KNOB_DDL:
        session.execute(text(statement))
    session.commit()


def set_fault_knobs(
    session: Executor,
    latency_ms: float | None = None,
    jitter_ms: float | None = None,
    error_rate: float | None = None,
    statement_timeout_ms: float | None = None,
) -> dict[str, float]:
    """Change the injected latency/jitter/error rate/statement timeout live; ``None`` leaves a knob as it is."""
    values = {"latency_ms": latency_ms, "jitter_ms": jitter_ms, "error_rate": error_rate,
              "statement_timeout_ms": statement_timeout_ms}
    for name, value in values.items():
        if value is not None and value < 0:
            raise ValueError(f"{name} must be >= 0")
    if error_rate is not None and error_rate > 1:
        raise ValueError("error_rate must be between 0 and 1")
    session.execute(
        text(
            "UPDATE mcp_loadtest_knobs SET latency_ms = coalesce(:latency_ms, latency_ms),"
            " jitter_ms = coalesce(:jitter_ms, jitter_ms), error_rate = coalesce(:error_rate, error_rate),"
            " statement_timeout_ms = coalesce(:statement_timeout_ms, statement_timeout_ms)"
            " WHERE id = 1"
        ).bindparams(
            bindparam("latency_ms", type_=Float),
            bindparam("jitter_ms", type_=Float),
            bindparam("error_rate", type_=Float),
            bindparam("statement_timeout_ms", type_=Float),
        ),
        values,
    )
    session.commit()
    return get_fault_knobs(session)


def get_fault_knobs(session: Executor) -> dict[str, float]:
    """The injected latency/jitter/error rate/statement timeout in force."""
    row = session.execute(
        text("SELECT latency_ms, jitter_ms, error_rate, statement_timeout_ms FROM mcp_loadtest_knobs WHERE id = 1")
    ).one()
    return {"latency_ms": float(row[0]), "jitter_ms": float(row[1]), "error_rate": float(row[2]),
            "statement_timeout_ms": float(row[3])}


# --- the statements --------------------------------------------------------------------------------
# Timestamps are set explicitly, not left to the server defaults: the same statements then fill a table created
# from another model of mcp_sessions (ContextForge's has no server defaults).
_NOW = {"created_at": func.now(), "last_accessed": func.now()}


def insert_session(session: Executor, session_id: str, data: str | None = None) -> None:
    """Insert a session row."""
    session.execute(insert(SessionRow).values(session_id=session_id, data=data, **_NOW))
    session.commit()


def insert_sessions(session: Executor, session_ids: Sequence[str]) -> None:
    """Insert many session rows in one round trip."""
    session.execute(insert(SessionRow).values(**_NOW), [{"session_id": sid} for sid in session_ids])
    session.commit()


def delete_session(session: Executor, session_id: str) -> bool:
    """Delete a session row and (by cascade) its messages; True if a row was deleted."""
    deleted = session.execute(
        delete(SessionRow).where(SessionRow.session_id == session_id).returning(SessionRow.session_id)
    ).first()
    session.commit()
    return deleted is not None


def delete_sessions(session: Executor, session_ids: Sequence[str]) -> int:
    """Delete many session rows in one statement; how many were deleted."""
    result = session.execute(
        delete(SessionRow).where(SessionRow.session_id == func.any(bindparam("ids", type_=ARRAY(String)))),
        {"ids": list(session_ids)},
    )
    session.commit()
    return int(result.rowcount or 0)


_DELETE_GONE = (
    delete(SessionRow)
    .where(SessionRow.session_id == func.any(bindparam("ids", type_=ARRAY(String))))
    .returning(SessionRow.session_id)
)


def delete_gone_sessions(session: Executor, session_ids: Sequence[str]) -> list[str]:
    """Phase 1, batched: one ``DELETE … WHERE session_id = ANY(:ids) RETURNING session_id`` for every gone
    session of a cycle (their messages go by cascade); the ids whose rows were deleted."""
    rows = session.execute(_DELETE_GONE, {"ids": list(session_ids)}).all()
    session.commit()
    return [row[0] for row in rows]


_SELECT_ONE = select(SessionRow.session_id).where(SessionRow.session_id == bindparam("sid"))
_TOUCH_ONE = update(SessionRow).where(SessionRow.session_id == bindparam("sid")).values(last_accessed=func.now())


def refresh_session(session: Session, session_id: str) -> bool:
    """The real gateway's refresh: load the row, set ``last_accessed``, commit. False if no row."""
    row = session.get(SessionRow, session_id)
    if row is None:
        session.rollback()
        return False
    row.last_accessed = func.now()  # type: ignore[assignment]
    session.commit()
    return True


_TOUCH_ONE_RETURNING = _TOUCH_ONE.returning(SessionRow.session_id)
_SESSIONS = SessionRow.__table__
_INSERT_ONE = insert(_SESSIONS).values(session_id=bindparam("sid"), data=bindparam("data"))
_INSERT_MANY = insert(_SESSIONS).from_select(
    ["session_id", "data"],
    select(func.unnest(bindparam("sids", type_=ARRAY(String))), func.unnest(bindparam("datas", type_=ARRAY(Text)))),
)
_DELETE_ONE = delete(_SESSIONS).where(_SESSIONS.c.session_id == bindparam("sid")).returning(_SESSIONS.c.session_id)

_REFRESH_MANY = (
    update(SessionRow)
    .where(SessionRow.session_id == func.any(bindparam("ids", type_=ARRAY(String))))
    .values(last_accessed=func.now())
    .returning(SessionRow.session_id)
)


def refresh_sessions(session: Executor, session_ids: Sequence[str]) -> set[str]:
    """One ``UPDATE … WHERE session_id = ANY(:ids) RETURNING session_id``; the ids that exist."""
    found = {row[0] for row in session.execute(_REFRESH_MANY, {"ids": list(session_ids)})}
    session.commit()
    return found


def expire_sessions(session: Executor, ttl_seconds: float) -> list[str]:
    """Delete rows idle longer than ``ttl_seconds`` by the database clock; the deleted ids."""
    cutoff = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, bindparam("ttl", ttl_seconds, type_=Float))
    rows = session.execute(
        delete(SessionRow).where(SessionRow.last_accessed < cutoff).returning(SessionRow.session_id)
    ).all()
    session.commit()
    return [row[0] for row in rows]


def touch_session(session: Executor, session_id: str) -> bool:
    """Mark activity on a session (a request arrived): one UPDATE of ``last_accessed``; False if no row."""
    found = session.execute(_TOUCH_ONE_RETURNING, {"sid": session_id}).first()
    session.commit()
    return found is not None


def all_session_ids(session: Executor) -> set[str]:
    """Every session id in the table."""
    return set(session.scalars(select(SessionRow.session_id)))


def db_activity(session: Executor, application_prefix: str = APPLICATION_PREFIX) -> dict[str, Any]:
    """Connections in ``pg_stat_activity`` by state for our application_name, and ``max_connections``: the one
    ``pg_stat_activity`` query, for the gateway's ``/admin/db``, the harness's sampler and the bench."""
    rows = session.execute(
        text(
            "SELECT coalesce(state, 'unknown'), count(*) FROM pg_stat_activity"
            " WHERE application_name LIKE :prefix GROUP BY 1"
        ),
        {"prefix": f"{application_prefix}%"},
    ).all()
    max_connections = int(
        session.execute(text("SELECT current_setting('max_connections')::int")).scalar_one()
    )
    total = int(
        session.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
        ).scalar_one()
    )
    by_state = {str(state): int(count) for state, count in rows}
    return {
        "by_state": by_state,
        "gateway_connections": sum(by_state.values()),
        "client_connections": total,
        "max_connections": max_connections,
    }


# --- drivers ---------------------------------------------------------------------------------------
def driver_url(url: str, driver: str) -> str:
    """Turn any ``postgresql://`` URL into the SQLAlchemy URL for ``driver`` (thread/async)."""
    parsed = make_url(url)
    name = "postgresql+psycopg" if driver == "thread" else "postgresql+asyncpg"
    return parsed.set(drivername=name).render_as_string(hide_password=False)


class SessionStore(ABC):
    """Runs the statements above on a pooled engine and watches the pool."""

    monitor: PoolMonitor
    config: StoreConfig

    def _call(self, session: Session, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        self.monitor.acquire(session)
        return fn(session, *args)

    @abstractmethod
    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(session, *args)`` with a pooled connection and return its result."""

    async def refresh(self, session_id: str) -> bool:
        """The cleanup refresh of one session (SELECT, UPDATE ``last_accessed``, COMMIT)."""
        return await self.run(refresh_session, session_id)

    async def refresh_many(self, session_ids: Sequence[str]) -> set[str]:
        """The batched refresh: one UPDATE for all ``session_ids``; the ids that exist."""
        return await self.run(refresh_sessions, session_ids)

    async def add(self, session_id: str, data: str | None = None) -> None:
        """Insert a new session's row (:func:`insert_session`)."""
        await self.run(insert_session, session_id, data)

    async def remove(self, session_id: str, *, grouped: bool = True) -> bool:
        """Delete a session's row (:func:`delete_session`); True if a row was deleted.

        ``grouped=False``: never wait for a ``--write-batch-ms`` window (a cleanup cycle's removals, one after
        another, would each wait one).
        """
        return await self.run(delete_session, session_id)

    async def touch(self, session_id: str) -> bool:
        """Mark activity on a session (:func:`touch_session`); False if no row."""
        return await self.run(touch_session, session_id)

    async def hold_connections(self, count: int, seconds: float) -> int:
        """Check ``count`` pooled connections out and keep them idle for ``seconds`` (the pool-exhaust fault).

        Returns how many were held; a checkout that fails (e.g. the pool timeout) is skipped.
        """

        async def hold_one() -> None:
            release = await self._checkout()
            try:
                await asyncio.sleep(seconds)
            finally:
                await release()

        results = await asyncio.gather(*(hold_one() for _ in range(count)), return_exceptions=True)
        return sum(1 for result in results if result is None)

    @abstractmethod
    async def _checkout(self) -> Callable[[], Awaitable[None]]:
        """Check one pooled connection out; returns the coroutine function that checks it back in."""

    @abstractmethod
    async def close(self) -> None:
        """Dispose of the engine (and executor)."""

    @property
    @abstractmethod
    def engine(self) -> Engine:
        """The synchronous engine behind the store (for pool inspection)."""

    @property
    def executor_threads(self) -> int | None:
        """Worker threads limiting the driver, or None when no executor is involved."""
        return None


# Server-side terminations: admin shutdown (pg_terminate_backend), crash shutdown, server not accepting.
_DISCONNECT_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})


def _treat_terminations_as_disconnects(engine: Engine) -> None:
    """Make SQLAlchemy invalidate the pool when Postgres terminated a backend.

    Not every driver reports "terminating connection due to administrator command" as a disconnect; marked
    as one, the pool discards every connection older than the error instead of handing out dead ones.
    """

    @event.listens_for(engine, "handle_error")
    def mark(context: Any) -> None:
        original = context.original_exception
        code = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
        if code in _DISCONNECT_SQLSTATES or "terminating connection" in str(original):
            context.is_disconnect = True


def _fault_settings(injected_faults: bool) -> dict[str, str]:
    """The run-time settings a store's connections start with besides ``application_name``."""
    return {} if injected_faults else {SKIP_FAULTS_SETTING: "on"}


def _psycopg_connect_args(config: StoreConfig, injected_faults: bool) -> dict[str, str]:
    """psycopg takes the other run-time settings as ``-c name=value`` options."""
    options = " ".join(f"-c {name}={value}" for name, value in _fault_settings(injected_faults).items())
    return {"application_name": config.application_name, **({"options": options} if options else {})}


def _engine_kwargs(config: StoreConfig) -> dict[str, Any]:
    return {
        "pool_size": config.pool_size,
        "max_overflow": config.max_overflow,
        "pool_timeout": config.pool_timeout,
        "pool_pre_ping": config.pool_pre_ping,
    }


class ThreadStore(SessionStore):
    """Synchronous SQLAlchemy (psycopg) in worker threads: what the real gateway does."""

    def __init__(self, config: StoreConfig, *, injected_faults: bool = True) -> None:
        self.config = config
        self._engine = create_engine(
            driver_url(config.db_url, "thread"),
            connect_args=_psycopg_connect_args(config, injected_faults),
            **_engine_kwargs(config),
        )
        _treat_terminations_as_disconnects(self._engine)
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        self._executor = ThreadPoolExecutor(config.executor_threads, thread_name_prefix="gateway-db")
        self.monitor = PoolMonitor(
            self._engine.pool, config.pool_size, config.max_overflow, executor_threads=config.executor_threads
        )

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def executor_threads(self) -> int | None:
        return self.config.executor_threads

    def _in_thread(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        self.monitor.dequeue()
        with self._sessions() as session:
            return self._call(session, fn, args)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        # asyncio.to_thread semantics (context copied) on an executor of executor_threads workers.
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        self.monitor.enqueue()
        call = functools.partial(ctx.run, self._in_thread, fn, args)
        return await loop.run_in_executor(self._executor, call)

    async def _checkout(self) -> Callable[[], Awaitable[None]]:
        # the default executor, so a held connection occupies no thread of the driver's executor
        conn = await asyncio.to_thread(self._engine.connect)

        async def release() -> None:
            await asyncio.to_thread(conn.close)

        return release

    async def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.monitor.detach()
        self._engine.dispose()


@dataclass(frozen=True)
class _Single:
    """A Core statement compiled once for the asyncpg dialect: its SQL and the order of its parameters."""

    sql: str
    params: tuple[str, ...]

    @classmethod
    def of(cls, statement: Any, dialect: Any) -> _Single:
        compiled = statement.compile(dialect=dialect)
        return cls(str(compiled), tuple(compiled.positiontup or ()))


def _connection_failed(exc: BaseException) -> bool:
    """The connection itself failed (terminated, closed, unreachable), not just the statement."""
    code = str(getattr(exc, "sqlstate", "") or "")
    return not code or code.startswith(("08", "57P"))


class AsyncStore(SessionStore):
    """SQLAlchemy's asyncio engine on asyncpg: the same statements, run on an ``AsyncConnection``.

    Statements run through ``AsyncConnection.run_sync`` on a plain Connection (no ORM unit of work on the
    event loop); the hot paths (the refresh, a session's insert, delete and touch) run Core statements compiled
    once on the pooled asyncpg connection, statement by statement.
    """

    def __init__(self, config: StoreConfig, *, injected_faults: bool = True) -> None:
        self.config = config
        self._async_engine: AsyncEngine = create_async_engine(
            driver_url(config.db_url, "async"),
            connect_args={"server_settings": {"application_name": config.application_name,
                                              **_fault_settings(injected_faults)}},
            **_engine_kwargs(config),
        )
        _treat_terminations_as_disconnects(self._async_engine.sync_engine)
        self._pool = self._async_engine.sync_engine.pool
        dialect = self._async_engine.dialect
        self._insert_one = _Single.of(_INSERT_ONE, dialect)
        self._delete_one = _Single.of(_DELETE_ONE, dialect)
        self._touch_one = _Single.of(_TOUCH_ONE_RETURNING, dialect)
        self._select_one = _Single.of(_SELECT_ONE, dialect)
        self._update_one = _Single.of(_TOUCH_ONE, dialect)
        self._insert_many = _Single.of(_INSERT_MANY, dialect)
        self._delete_many = _Single.of(_DELETE_GONE, dialect)
        self.monitor = PoolMonitor(self._async_engine.sync_engine.pool, config.pool_size, config.max_overflow)
        window = config.write_batch_ms / 1000.0
        self._adds = WriteBatcher(self._add_batch, window) if window else None
        self._removes = WriteBatcher(self._remove_batch, window) if window else None

    @property
    def engine(self) -> Engine:
        return self._async_engine.sync_engine

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        conn = await self.monitor.acquire_async(self._async_engine)
        try:
            return await conn.run_sync(fn, *args)
        finally:
            await conn.close()

    async def refresh(self, session_id: str) -> bool:
        # The hot path: the same BEGIN, SELECT, UPDATE, COMMIT as the ORM refresh (Core statements compiled once),
        # run on the pooled connection's asyncpg driver connection (no per-statement layers on the event loop).
        fairy = await self.monitor.acquire_pooled_async(self._pool)
        try:
            driver = fairy.driver_connection
            async with driver.transaction():
                if await driver.fetchval(self._select_one.sql, session_id) is None:
                    return False
                await driver.execute(self._update_one.sql, session_id)
            return True
        except Exception as exc:
            raise self._failed(fairy, self._update_one, (session_id,), exc) from exc
        finally:
            await greenlet_spawn(fairy.close)

    def _failed(self, fairy: Any, statement: _Single, args: tuple[Any, ...], exc: Exception) -> OperationalError:
        """The driver's error as SQLAlchemy's; a failed connection invalidates the pool, as a disconnect does."""
        if _connection_failed(exc):
            self._pool._invalidate(fairy, exc)  # every connection older than this one is replaced on checkout
        return OperationalError(statement.sql, args, exc)

    async def _single(self, statement: _Single, *args: Any, rows: bool = False) -> Any:
        # One statement outside a transaction (Postgres commits it at once): one round trip, run on the pooled
        # connection's asyncpg driver connection without SQLAlchemy's per-statement layers. Only the async
        # driver does this; the thread driver sends what the real gateway sends.
        fairy = await self.monitor.acquire_pooled_async(self._pool)
        try:
            driver = fairy.driver_connection
            return await (driver.fetch if rows else driver.fetchval)(statement.sql, *args)
        except Exception as exc:
            raise self._failed(fairy, statement, args, exc) from exc
        finally:
            await greenlet_spawn(fairy.close)

    async def add(self, session_id: str, data: str | None = None) -> None:
        if self._adds is not None:
            await self._adds.submit((session_id, data))
        else:
            await self._single(self._insert_one, session_id, data)

    async def remove(self, session_id: str, *, grouped: bool = True) -> bool:
        if grouped and self._removes is not None:
            return await self._removes.submit(session_id)
        return await self._single(self._delete_one, session_id) is not None

    async def _add_batch(self, items: list[tuple[str, str | None]]) -> list[None]:
        """``--write-batch-ms``: one ``INSERT … SELECT unnest(:ids), unnest(:data)`` for a window's opens."""
        await self._single(self._insert_many, [sid for sid, _ in items], [data for _, data in items])
        return [None] * len(items)

    async def _remove_batch(self, session_ids: list[str]) -> list[bool]:
        """``--write-batch-ms``: one ``DELETE … = ANY(:ids) RETURNING session_id`` for a window's closes."""
        deleted = {row[0] for row in await self._single(self._delete_many, session_ids, rows=True)}
        return [session_id in deleted for session_id in session_ids]

    async def touch(self, session_id: str) -> bool:
        return await self._single(self._touch_one, session_id) is not None

    async def _checkout(self) -> Callable[[], Awaitable[None]]:
        conn = await self._async_engine.connect()
        return conn.close

    async def close(self) -> None:
        for batcher in (self._adds, self._removes):
            if batcher is not None:
                await batcher.close()
        self.monitor.detach()
        await self._async_engine.dispose()


def open_store(config: StoreConfig, *, injected_faults: bool = True) -> SessionStore:
    """The store for ``config.driver``. ``injected_faults=False``: the refresh trigger's injected latency and
    errors pass this store's connections by (the CPU calibration's store, which runs while they stay in force)."""
    cls = ThreadStore if config.driver == "thread" else AsyncStore
    return cls(config, injected_faults=injected_faults)
