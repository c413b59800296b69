"""The aiohttp MCP gateway: SSE and Streamable HTTP transports, health, metrics and admin routes."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import math
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from gateway_sim import mcp
from gateway_sim import store as st
from gateway_sim.allocator import heap_stats
from gateway_sim.config import GatewayConfig
from gateway_sim.metrics import CycleLog, GatewayMetrics, SessionEventLog
from gateway_sim.registry_api import Registry, create_registry
from gateway_sim.store import SessionStore
from gateway_sim.transports import SSETransport, StreamableHTTPTransport, sse_event

log = logging.getLogger(__name__)

CONFIG = web.AppKey("config", GatewayConfig)
STORE = web.AppKey("store", SessionStore)
REGISTRY = web.AppKey("registry", Registry)
METRICS = web.AppKey("metrics", GatewayMetrics)
CYCLES = web.AppKey("cycles", CycleLog)
TASKS = web.AppKey("tasks", set)

SESSION_HEADER = "Mcp-Session-Id"
_SESSION_ID = re.compile(r"[0-9a-f]{32}")
MCP_PATHS = ("/sse", "/message", "/mcp")


def json_error(status: int, message: str, code: int | None = None, request_id: Any = None) -> web.Response:
    """An HTTP error whose body is a JSON-RPC error object."""
    body = mcp.error_response(request_id, code if code is not None else -32000, message)
    return web.json_response(body, status=status)


class BadHttpLogFilter(logging.Filter):
    """aiohttp logs a malformed request (bad framing, header, chunk or content encoding) as an error
    with a traceback.

    The fault is the client's: this turns such a record into one warning line without the traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, web.RequestPayloadError):  # a body aiohttp could not decode
            exc = exc.__cause__
        if isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 0) < 500:
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "a client"
            record.msg = "bad HTTP request from %s: %s"
            record.args = (remote, " ".join(str(exc.message).split()))
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


_BAD_HTTP_LOG_FILTER = BadHttpLogFilter()


async def close_after_unread_encoded_body(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """Answer ``Connection: close`` when a content-encoded body is left unread (or failed to decode).

    aiohttp drains an unread body after the answer; an undecodable one ends the connection there, so
    the client must not reuse it.
    """
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity") and not request.content.is_eof():
        response.force_close()
        response.headers["Connection"] = "close"  # the hook runs after aiohttp has set the headers


# --- middlewares -------------------------------------------------------------------------------------
@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Turn aiohttp's HTTP errors into JSON bodies; an unexpected error is a logged 500, never a leak."""
    try:
        return await handler(request)
    except web.RequestPayloadError as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, HttpProcessingError) else exc
        message = " ".join(str(getattr(cause, "message", cause)).split())
        return json_error(400, f"request body could not be read: {message}")
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        reason = exc.reason
        if exc.status == 413:
            reason = f"request body too large (limit {request.app[CONFIG].max_body_bytes} bytes)"
        return _with_headers(json_error(exc.status, reason), exc)
    except ConnectionError as exc:
        if request.transport is None or request.transport.is_closing():
            # The client left mid-request (a body cut short): nobody reads the answer, nothing to trace.
            log.info("client left during %s %s: %s", request.method, request.path, exc)
            return json_error(400, "the client closed the connection before the request was complete")
        log.warning("backend connection failed for %s %s: %s", request.method, request.path, exc)
        return json_error(503, "a backend connection failed, try again")
    except SQLAlchemyError as exc:
        log.warning("database unavailable for %s %s: %s", request.method, request.path, exc)
        return json_error(503, "database unavailable, try again")
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return json_error(500, "internal error")


def _with_headers(response: web.Response, exc: web.HTTPException) -> web.Response:
    for name in ("Allow", "WWW-Authenticate"):
        value = exc.headers.get(name)
        if value:
            response.headers[name] = value
    return response


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """With ``auth_token`` set, MCP endpoints need ``Authorization: Bearer <token>``."""
    token = request.app[CONFIG].auth_token
    if token and request.path.startswith(MCP_PATHS):
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        # header bytes that are not UTF-8 arrive as surrogate escapes: compare them as the raw bytes
        given_bytes = given.strip().encode("utf-8", "surrogateescape")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given_bytes, token.encode()):
            return _with_headers(
                json_error(401, "missing or wrong bearer token"),
                web.HTTPUnauthorized(headers={"WWW-Authenticate": "Bearer"}),
            )
    return await handler(request)


#: Request bodies come plain or gzip-compressed. aiohttp waits forever on a truncated deflate stream
#: sent in chunks, so that (and anything else) is refused before the body is read.
ACCEPTED_CONTENT_ENCODINGS = ("", "identity", "gzip")


@web.middleware
async def content_encoding_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Refuse a request body whose Content-Encoding is not identity or gzip (415)."""
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if request.body_exists and encoding not in ACCEPTED_CONTENT_ENCODINGS:
        return json_error(415, f"Content-Encoding {encoding!r} is not supported; send identity or gzip")
    return await handler(request)


def _is_loopback(request: web.Request) -> bool:
    try:
        address = ipaddress.ip_address((request.remote or "").split("%")[0])
    except ValueError:
        return False
    # a dual-stack socket shows IPv4 clients as ::ffff:a.b.c.d
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return (mapped or address).is_loopback


@web.middleware
async def admin_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Admin routes answer loopback clients only."""
    if request.path.startswith("/admin/") and not _is_loopback(request):
        return json_error(403, "admin endpoints answer loopback clients only")
    return await handler(request)


# --- helpers -----------------------------------------------------------------------------------------
async def _read_json_rpc(request: web.Request) -> mcp.Request:
    content_type = request.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
    if content_type not in ("application/json", ""):
        raise _HttpJsonRpc(
            415,
            mcp.JsonRpcError(
                mcp.INVALID_REQUEST, f"Content-Type must be application/json, got {content_type}"
            ),
        )
    body = await request.read()
    try:
        return mcp.parse_body(body)
    except mcp.JsonRpcError as exc:
        raise _HttpJsonRpc(400, exc) from None


class _HttpJsonRpc(Exception):
    def __init__(self, status: int, error: mcp.JsonRpcError) -> None:
        super().__init__(error.message)
        self.status = status
        self.error = error

    def response(self) -> web.Response:
        return web.json_response(self.error.response(), status=self.status)


def _spawn(app: web.Application, coro: Awaitable[None]) -> None:
    task = asyncio.ensure_future(coro)
    app[TASKS].add(task)
    task.add_done_callback(app[TASKS].discard)


# --- SSE transport -----------------------------------------------------------------------------------
async def sse_handler(request: web.Request) -> web.StreamResponse:
    """``GET /sse``: open a session; ``endpoint`` first, then ``message`` and ``keepalive`` events."""
    app = request.app
    registry = app[REGISTRY]
    transport = SSETransport(request)
    session_id = await registry.add_session(transport)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    client_gone = False
    try:
        await response.prepare(request)
        await response.write(sse_event("endpoint", f"/message?session_id={session_id}"))
        keepalive = app[CONFIG].sse_keepalive
        while True:
            try:
                message = await asyncio.wait_for(transport.queue.get(), keepalive)
            except TimeoutError:
                await response.write(sse_event("keepalive", "{}"))
                continue
            if message is None:
                break
            await response.write(sse_event("message", message))
    except ConnectionError:
        client_gone = True
        transport.mark_closed()
    finally:
        if client_gone:
            await asyncio.shield(registry.remove_session(session_id, "stream_closed"))
    return response


def _session_id_param(value: str | None) -> str:
    if not value:
        raise _HttpJsonRpc(400, mcp.JsonRpcError(mcp.INVALID_REQUEST, "missing session id"))
    if not _SESSION_ID.fullmatch(value):
        raise _HttpJsonRpc(400, mcp.JsonRpcError(mcp.INVALID_REQUEST, "malformed session id"))
    return value


async def message_handler(request: web.Request) -> web.StreamResponse:
    """``POST /message?session_id=ID``: accept a JSON-RPC message; the answer goes on the stream."""
    try:
        session_id = _session_id_param(request.query.get("session_id"))
        transport = request.app[REGISTRY].get(session_id)
        if transport is None or transport.kind != "sse":
            return json_error(404, f"unknown session {session_id}")
        rpc = await _read_json_rpc(request)
    except _HttpJsonRpc as exc:
        return exc.response()

    async def answer() -> None:
        response = await mcp.dispatch(rpc)
        if response is not None:
            try:
                await transport.send(response)
            except ConnectionError:
                log.info("session %s left before its answer", session_id)

    _spawn(request.app, answer())
    return web.json_response({"status": "accepted"}, status=202)


# --- Streamable HTTP transport -----------------------------------------------------------------------
async def mcp_post_handler(request: web.Request) -> web.StreamResponse:
    """``POST /mcp``: ``initialize`` creates a session (``Mcp-Session-Id``); later calls carry it."""
    registry = request.app[REGISTRY]
    header = request.headers.get(SESSION_HEADER)
    try:
        if header is not None:
            session_id = _session_id_param(header)
            transport = registry.get(session_id)
            if transport is None or transport.kind != "streamable_http":
                return json_error(404, f"unknown session {session_id}")
        rpc = await _read_json_rpc(request)
    except _HttpJsonRpc as exc:
        return exc.response()
    headers: dict[str, str] = {}
    if header is None:
        if rpc.method != "initialize":
            return json_error(
                400,
                f"missing {SESSION_HEADER} header (only initialize may omit it)",
                mcp.INVALID_REQUEST,
                rpc.id,
            )
        response = await mcp.dispatch(rpc)
        if response is not None and "error" not in response:
            headers[SESSION_HEADER] = await registry.add_session(StreamableHTTPTransport())
    else:
        if not await registry.touch(session_id):
            return json_error(404, f"session {session_id} expired")
        response = await mcp.dispatch(rpc)
    if response is None:
        return web.json_response({"status": "accepted"}, status=202, headers=headers)
    return web.json_response(response, headers=headers)


async def mcp_delete_handler(request: web.Request) -> web.StreamResponse:
    """``DELETE /mcp``: end the session named in ``Mcp-Session-Id``."""
    try:
        session_id = _session_id_param(request.headers.get(SESSION_HEADER))
    except _HttpJsonRpc as exc:
        return exc.response()
    registry = request.app[REGISTRY]
    transport = registry.get(session_id)
    if transport is None or transport.kind != "streamable_http":
        return json_error(404, f"unknown session {session_id}")
    await registry.remove_session(session_id, "deleted")
    return web.json_response({"status": "deleted", "session_id": session_id})


async def mcp_get_handler(request: web.Request) -> web.StreamResponse:
    """``GET /mcp``: this server offers no server-initiated stream."""
    return _with_headers(
        json_error(405, "GET /mcp streams are not offered; use POST"),
        web.HTTPMethodNotAllowed("GET", ["POST", "DELETE"]),
    )


# --- health, metrics, admin --------------------------------------------------------------------------
async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers and how many sessions it holds."""
    return web.json_response(
        {
            "status": "ok",
            "worker": request.app[CONFIG].worker_id,
            "pid": os.getpid(),
            "sessions": len(request.app[REGISTRY].sessions),
        }
    )


async def metrics_handler(request: web.Request) -> web.Response:
    """Prometheus text format."""
    app = request.app
    app[METRICS].observe_pool(app[REGISTRY].monitor.snapshot(), len(app[REGISTRY].sessions))
    return web.Response(
        body=generate_latest(app[METRICS].registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


def _int_query(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise _HttpJsonRpc(400, mcp.JsonRpcError(mcp.INVALID_PARAMS, f"{name} must be an integer")) from None


async def admin_cycles(request: web.Request) -> web.Response:
    """Recent cycle records (``?since=N`` for those after cycle N), pool gauges and accounting."""
    app = request.app
    try:
        since = _int_query(request, "since", 0)
        limit = _int_query(request, "limit", 1000)
    except _HttpJsonRpc as exc:
        return exc.response()
    cycles = app[CYCLES].since(since)[-max(0, limit) :] if limit > 0 else []
    registry = app[REGISTRY]
    config = app[CONFIG]
    return web.json_response(
        {
            "worker": config.worker_id,
            "pid": os.getpid(),
            "cycles_total": app[CYCLES].total,
            "cycles": [c.as_dict() for c in cycles],
            "pool": registry.monitor.snapshot().as_dict(),
            "sessions": registry.accounting(),
            "config": {
                "max_concurrent": config.registry.max_concurrent,
                "batch_size": config.registry.batch_size,
                "cleanup_interval": config.registry.cleanup_interval,
                "session_ttl": config.registry.session_ttl,
                "pool_size": config.store.pool_size,
                "max_overflow": config.store.max_overflow,
                "pool_timeout": config.store.pool_timeout,
                "sse_keepalive": config.sse_keepalive,
                "malloc_mmap_threshold": config.malloc_mmap_threshold,
                **registry.describe(),
            },
        }
    )


async def admin_db(request: web.Request) -> web.Response:
    """``pg_stat_activity`` of the gateways by state, and the server's ``max_connections``."""
    return web.json_response(await request.app[STORE].run(st.db_activity))


async def admin_sessions(request: web.Request) -> web.Response:
    """The ids of the sessions this process holds, by transport, with the accounting."""
    registry = request.app[REGISTRY]
    by_transport: dict[str, list[str]] = {}
    for session_id, transport in registry.sessions.items():
        by_transport.setdefault(transport.kind, []).append(session_id)
    return web.json_response({"worker": request.app[CONFIG].worker_id, "sessions": by_transport,
                              "accounting": registry.accounting()})


async def admin_cleanup(request: web.Request) -> web.Response:
    """Run one cleanup cycle now and return its record."""
    record = await request.app[REGISTRY].run_cleanup_cycle()
    return web.json_response(record.as_dict())


def _process_stats(app: web.Application) -> dict[str, Any]:
    """This process's resident memory (and the C allocator's bytes in use vs kept free), open file descriptors,
    asyncio tasks and pooled connections."""
    rss_bytes: int | None = None
    open_fds: int | None = None
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            rss_bytes = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        open_fds = len(os.listdir("/proc/self/fd"))
    except (OSError, ValueError, IndexError):  # no /proc on this platform
        pass
    registry = app[REGISTRY]
    pool = registry.monitor.pool
    return {
        "pid": os.getpid(),
        "rss_bytes": rss_bytes,
        "open_fds": open_fds,
        "asyncio_tasks": len(asyncio.all_tasks()),
        "pool_connections": pool.checkedin() + pool.checkedout(),  # type: ignore[attr-defined]
        "sessions_active": len(registry.sessions),
        "sessions_persistent": sum(1 for t in registry.sessions.values() if t.persistent),
        **(heap_stats() or {"malloc_in_use_bytes": None, "malloc_free_bytes": None}),
        "malloc_mmap_threshold": app[CONFIG].malloc_mmap_threshold,
    }


async def admin_process(request: web.Request) -> web.Response:
    """Resource use of this worker: RSS, open fds, asyncio tasks, pooled connections, sessions."""
    return web.json_response({"worker": request.app[CONFIG].worker_id, **_process_stats(request.app)})


MAX_HOLD_SECONDS = 3600.0


async def admin_hold_connections(request: web.Request) -> web.Response:
    """The pool-exhaust fault: ``{"seconds": 5, "connections": N}`` checks N pooled connections out (default:
    the pool's limit) and keeps them idle for that long, so other work waits for the pool or times out."""
    try:
        body = json.loads(await request.read() or b"{}")
    except (ValueError, RecursionError):
        return json_error(400, "body must be a JSON object", mcp.PARSE_ERROR)
    registry = request.app[REGISTRY]
    limit = registry.monitor.limit
    if not isinstance(body, dict) or set(body) - {"seconds", "connections"}:
        return json_error(400, "expected an object with seconds and optionally connections", mcp.INVALID_PARAMS)
    seconds = _finite_number(body.get("seconds"))
    if seconds is None or not 0 < seconds <= MAX_HOLD_SECONDS:
        return json_error(400, f"seconds must be a number in (0, {MAX_HOLD_SECONDS:g}]", mcp.INVALID_PARAMS)
    count = body.get("connections", limit)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= limit:
        return json_error(400, f"connections must be an integer in [1, {limit}]", mcp.INVALID_PARAMS)

    async def hold() -> None:
        held = await registry.hold_connections(count, seconds)
        log.warning("held %d of %d pooled connections for %.1f s", held, count, seconds)

    _spawn(request.app, hold())
    return web.json_response({"holding": count, "seconds": seconds}, status=202)


async def admin_latency_get(request: web.Request) -> web.Response:
    """The injected refresh latency/jitter/error rate in force."""
    return web.json_response(await request.app[STORE].run(st.get_fault_knobs))


def _finite_number(value: Any) -> float | None:
    """``value`` as a finite float; None for anything else (bools, strings, NaN, ±Infinity, 1e999)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond the float range
        return None
    return number if math.isfinite(number) else None


async def admin_latency_post(request: web.Request) -> web.Response:
    """Change the injected latency live: ``{"latency_ms": 80, "jitter_ms": 5, "error_rate": 0}``."""
    try:
        body = json.loads(await request.read() or b"{}")
    except (ValueError, RecursionError):
        return json_error(400, "body must be a JSON object", mcp.PARSE_ERROR)
    if not isinstance(body, dict) or set(body) - {"latency_ms", "jitter_ms", "error_rate"}:
        return json_error(
            400, "expected an object with latency_ms, jitter_ms and/or error_rate", mcp.INVALID_PARAMS
        )
    values: dict[str, float | None] = {}
    for name in ("latency_ms", "jitter_ms", "error_rate"):
        value = body.get(name)
        values[name] = None if value is None else _finite_number(value)
        if value is not None and values[name] is None:
            return json_error(400, f"{name} must be a finite number", mcp.INVALID_PARAMS)
    try:
        knobs = await request.app[STORE].run(
            st.set_fault_knobs, values["latency_ms"], values["jitter_ms"], values["error_rate"]
        )
    except ValueError as exc:
        return json_error(400, str(exc), mcp.INVALID_PARAMS)
    return web.json_response(knobs)


# --- app factory ----------------------------------------------------------------------------------------
async def _resources(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    registry = create_registry(config)
    try:
        await registry.start()
        store = registry.store
        await store.run(st.create_schema)  # after the registry's own tables: the fault hooks attach to them
        if config.db_latency_ms is not None or config.db_jitter_ms is not None:
            await store.run(st.set_fault_knobs, config.db_latency_ms, config.db_jitter_ms, None)
        metrics = GatewayMetrics()
        registry.listeners.append(metrics.observe_session)
        registry.cycle_log.listeners.append(metrics.observe_cycle)
        session_log = SessionEventLog(config.session_log) if config.session_log else None
        if session_log is not None:
            registry.listeners.append(session_log)
        app[STORE] = store
        app[METRICS] = metrics
        app[CYCLES] = registry.cycle_log
        app[REGISTRY] = registry
        cleanup_task = asyncio.create_task(registry.run_forever(), name="cleanup-loop")
        yield
        cleanup_task.cancel()
        await asyncio.gather(cleanup_task, return_exceptions=True)
        for task in list(app[TASKS]):
            task.cancel()
        await asyncio.gather(*app[TASKS], return_exceptions=True)
        if session_log is not None:
            session_log.close()
    finally:
        await registry.stop()


async def _on_shutdown(app: web.Application) -> None:
    # End SSE streams so their handlers return, and delete this worker's rows while the DB is open.
    if REGISTRY in app:
        await app[REGISTRY].close()


def create_app(config: GatewayConfig) -> web.Application:
    """Build the gateway application; resources start and stop with the app."""
    app = web.Application(
        client_max_size=config.max_body_bytes,
        middlewares=[error_middleware, admin_middleware, auth_middleware, content_encoding_middleware],
    )
    app[CONFIG] = config
    app[TASKS] = set()
    logging.getLogger("aiohttp.server").addFilter(_BAD_HTTP_LOG_FILTER)
    app.cleanup_ctx.append(_resources)
    app.on_shutdown.append(_on_shutdown)
    app.on_response_prepare.append(close_after_unread_encoded_body)
    app.router.add_get("/sse", sse_handler)
    app.router.add_post("/message", message_handler)
    app.router.add_post("/mcp", mcp_post_handler)
    app.router.add_delete("/mcp", mcp_delete_handler)
    app.router.add_get("/mcp", mcp_get_handler, allow_head=False)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_handler)
    if config.admin_enabled:
        app.router.add_get("/admin/cycles", admin_cycles)
        app.router.add_post("/admin/cleanup", admin_cleanup)
        app.router.add_get("/admin/db", admin_db)
        app.router.add_get("/admin/sessions", admin_sessions)
        app.router.add_get("/admin/latency", admin_latency_get)
        app.router.add_post("/admin/latency", admin_latency_post)
        app.router.add_get("/admin/process", admin_process)
        app.router.add_post("/admin/hold-connections", admin_hold_connections)
    return app
