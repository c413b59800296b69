"""The aiohttp MCP gateway: SSE and Streamable HTTP transports, health and metrics; the admin sub-application
is mounted from :mod:`gateway_sim.admin`."""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from gateway_sim import mcp
from gateway_sim import store as st
from gateway_sim.admin import create_admin_app
from gateway_sim.appkeys import CONFIG, CYCLES, METRICS, REGISTRY, STORE, TASKS, spawn
from gateway_sim.config import GatewayConfig
from gateway_sim.metrics import GatewayMetrics, SessionEventLog
from gateway_sim.registry_api import Registry, create_registry
from gateway_sim.responses import HttpJsonRpc, json_error
from gateway_sim.transports import GONE, KEEPALIVE, KEEPALIVE_EVENT, SSETransport, StreamableHTTPTransport, sse_event

log = logging.getLogger(__name__)


SESSION_HEADER = "Mcp-Session-Id"
_SESSION_ID = re.compile(r"[0-9a-f]{32}")
MCP_PATHS = ("/sse", "/message", "/mcp")


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


# --- helpers -----------------------------------------------------------------------------------------
async def _read_json_rpc(request: web.Request) -> mcp.Request:
    content_type = request.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
    if content_type not in ("application/json", ""):
        raise HttpJsonRpc(
            415,
            mcp.JsonRpcError(
                mcp.INVALID_REQUEST, f"Content-Type must be application/json, got {content_type}"
            ),
        )
    body = await request.read()
    try:
        return mcp.parse_body(body)
    except mcp.JsonRpcError as exc:
        raise HttpJsonRpc(400, exc) from None


# --- SSE transport -----------------------------------------------------------------------------------
class EventStreamResponse(web.StreamResponse):
    """A stream whose headers go out with its first event, in one send (as aiohttp does for a plain response);
    on an aiohttp without that switch they are sent at ``prepare``, as for any stream."""

    _send_headers_immediately = False


async def sse_handler(request: web.Request) -> web.StreamResponse:
    """``GET /sse``: open a session; ``endpoint`` first, then ``message`` and ``keepalive`` events."""
    app = request.app
    registry = app[REGISTRY]
    transport = SSETransport(request)
    session_id = await registry.add_session(transport)
    response = EventStreamResponse(
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
        transport.attach(response)
        queue = transport.queue
        while True:
            message = await queue.get()
            if message is None:
                break
            if message is GONE:
                raise ConnectionError("an answer found the client gone")
            await response.write(KEEPALIVE_EVENT if message is KEEPALIVE else sse_event("message", message))
    except ConnectionError:
        client_gone = True
        transport.mark_closed()
    finally:
        if client_gone:
            await asyncio.shield(registry.remove_session(session_id, "stream_closed"))
    return response


_ACCEPTED_BODY = b'{"status": "accepted"}'


def _accepted(headers: dict[str, str] | None = None) -> web.Response:
    """``202 {"status": "accepted"}`` (the body encoded once)."""
    return web.Response(body=_ACCEPTED_BODY, status=202, content_type="application/json", headers=headers)


async def keepalive_timer(registry: Registry, interval: float) -> None:
    """One timer for every stream: each ``interval`` seconds an idle SSE stream gets a keepalive event."""
    while True:
        await asyncio.sleep(interval)
        for transport in list(registry.sessions.values()):
            if isinstance(transport, SSETransport):
                transport.keepalive()


def _session_id_param(value: str | None) -> str:
    if not value:
        raise HttpJsonRpc(400, mcp.JsonRpcError(mcp.INVALID_REQUEST, "missing session id"))
    if not _SESSION_ID.fullmatch(value):
        raise HttpJsonRpc(400, mcp.JsonRpcError(mcp.INVALID_REQUEST, "malformed session id"))
    return value


async def message_handler(request: web.Request) -> web.StreamResponse:
    """``POST /message?session_id=ID``: accept a JSON-RPC message; the answer goes on the stream."""
    try:
        session_id = _session_id_param(request.query.get("session_id"))
        transport = request.app[REGISTRY].get(session_id)
        if transport is None or transport.kind != "sse":
            return json_error(404, f"unknown session {session_id}")
        rpc = await _read_json_rpc(request)
    except HttpJsonRpc as exc:
        return exc.response()

    async def answer() -> None:
        response = await mcp.dispatch(rpc)
        if response is not None:
            try:
                await transport.send(response)
            except ConnectionError:
                log.info("session %s left before its answer", session_id)

    if rpc.method == "tools/call" and rpc.params.get("name") == "sleep":
        spawn(request.app, answer())  # may take seconds: answered on the stream later
    else:
        await answer()  # answers at once: written to the stream without a task of its own
    return _accepted()


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
    except HttpJsonRpc as exc:
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
        return _accepted(headers)
    return web.json_response(response, headers=headers)


async def mcp_delete_handler(request: web.Request) -> web.StreamResponse:
    """``DELETE /mcp``: end the session named in ``Mcp-Session-Id``."""
    try:
        session_id = _session_id_param(request.headers.get(SESSION_HEADER))
    except HttpJsonRpc as exc:
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
        background = [asyncio.create_task(registry.run_forever(), name="cleanup-loop"),
                      asyncio.create_task(keepalive_timer(registry, config.sse_keepalive), name="sse-keepalive")]
        yield
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
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
        # without a token the auth layer would only pass requests on: it is left out
        middlewares=[error_middleware, *([auth_middleware] if config.auth_token else []),
                     content_encoding_middleware],
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
        app.add_subapp("/admin/", create_admin_app())
    return app
