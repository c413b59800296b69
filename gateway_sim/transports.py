"""Session transports: SSE streams, Streamable HTTP, and a synthetic one for direct benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, Protocol

import orjson
from aiohttp import web


class Transport(Protocol):
    """What the registry needs of a session's transport."""

    kind: str
    #: True when the transport holds a client connection that cleanup must check and keep alive.
    persistent: bool

    async def is_connected(self) -> bool:
        """Whether the client is still there (a real check of the connection)."""

    async def send(self, message: dict[str, Any]) -> None:
        """Deliver a JSON-RPC message to the client."""

    async def disconnect(self) -> None:
        """Close the client connection (idempotent)."""


KEEPALIVE: dict[str, Any] = {}
"""Queued on an idle stream by the gateway's one keepalive timer; the handler writes :data:`KEEPALIVE_EVENT`."""

GONE: dict[str, Any] = {}
"""Queued when a direct write found the client gone: the handler ends the stream and removes the session."""

#: Bytes a stream may hold unsent before a send is refused ("client is not reading its stream").
SEND_BUFFER_LIMIT = 1 << 20


class SSETransport:
    """A client's ``GET /sse`` stream.

    Once the handler has written the ``endpoint`` event (:meth:`attach`), answers are written straight from
    the sender's task, so an answer costs no queue hop and no wake-up of the stream's task. Before that, and
    for keepalives and the end of the stream, messages go through the queue the handler reads.
    """

    kind = "sse"
    persistent = True

    def __init__(self, request: web.Request, queue_size: int = 1000) -> None:
        self._request = request
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=queue_size)
        self._response: web.StreamResponse | None = None
        self._closed = False

    async def is_connected(self) -> bool:
        if self._closed:
            return False
        transport = self._request.transport
        return transport is not None and not transport.is_closing()

    def attach(self, response: web.StreamResponse) -> None:
        """The stream is open and its ``endpoint`` event written: later answers are written directly."""
        self._response = response

    def mark_closed(self) -> None:
        """A write to the stream failed: the client is gone."""
        self._closed = True

    def keepalive(self) -> None:
        """Ask the handler for a keepalive event if nothing else is waiting to be written."""
        if not self._closed and self.queue.empty():
            self.queue.put_nowait(KEEPALIVE)

    async def send(self, message: dict[str, Any]) -> None:
        if self._closed:
            raise ConnectionError("stream closed")
        response = self._response
        if response is None:
            self._put(message)
            return
        transport = self._request.transport
        if transport is not None and transport.get_write_buffer_size() > SEND_BUFFER_LIMIT:
            raise ConnectionError("client is not reading its stream")
        try:
            await response.write(sse_event("message", message))
        except ConnectionError:
            # The stream's handler removes the session, as when its own write fails.
            self._closed = True
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(GONE)
            raise

    def _put(self, message: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            raise ConnectionError("client is not reading its stream") from None

    async def disconnect(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self.queue.put_nowait(None)  # wake the handler so it ends the stream
            except asyncio.QueueFull:
                transport = self._request.transport
                if transport is not None:
                    transport.close()


def json_bytes(data: Any) -> bytes:
    """Compact JSON as UTF-8 (orjson; the standard library for what orjson refuses, such as integers beyond 64
    bits that a client may use as a JSON-RPC id)."""
    try:
        return orjson.dumps(data)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(data, separators=(",", ":")).encode()


def sse_event(event: str, data: Any) -> bytes:
    """Encode one server-sent event."""
    payload = data.encode() if isinstance(data, str) else json_bytes(data)
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"


KEEPALIVE_EVENT = sse_event("keepalive", "{}")


class StreamableHTTPTransport:
    """A Streamable HTTP session: no held connection; responses go back on each POST.

    Cleanup does not check or refresh it (it has nothing to check); each request refreshes its row,
    and a client that leaves without ``DELETE /mcp`` is removed by the TTL sweep.
    """

    kind = "streamable_http"
    persistent = False

    def __init__(self) -> None:
        self._closed = False

    async def is_connected(self) -> bool:
        return not self._closed

    async def send(self, message: dict[str, Any]) -> None:
        raise ConnectionError("Streamable HTTP responses are returned on the request, not pushed")

    async def disconnect(self) -> None:
        self._closed = True


class SyntheticTransport:
    """A transport with no client: reports connected until told otherwise (benchmarks, tests)."""

    kind = "synthetic"
    persistent = True

    def __init__(self, connected: bool = True) -> None:
        self.connected = connected
        self.sent: list[dict[str, Any]] = []

    async def is_connected(self) -> bool:
        return self.connected

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    async def disconnect(self) -> None:
        self.connected = False
