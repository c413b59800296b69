"""Read a server-sent event stream from a FastHttpUser response, and close it cleanly or abruptly.

``FastResponse._response`` is geventhttpclient's socket response: ``readline(b"\\n")`` returns as soon as a
line has arrived (``read(n)`` would wait for n bytes and stall on a quiet stream), and the body it yields
is already de-chunked. Waiting costs nothing but a parked greenlet, so thousands of streams fit one process.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from dataclasses import dataclass
from typing import Any


class StreamClosed(ConnectionError):
    """The server ended the stream (or the connection dropped)."""


@dataclass(frozen=True)
class SSEEvent:
    """One server-sent event."""

    event: str
    data: str


class SSEParser:
    """The server-sent event line grammar, fed one line at a time (pure; the one parser the load and the tests
    share). :meth:`feed` returns an event when a blank line completes one; comments and empty events are skipped."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: bytes | str) -> SSEEvent | None:
        """Take one line (with or without its line ending)."""
        text = (line.decode("utf-8", errors="replace") if isinstance(line, bytes) else line).rstrip("\r\n")
        if not text:
            if not (self._event or self._data):
                return None
            event = SSEEvent(self._event or "message", "\n".join(self._data))
            self._event, self._data = "", []
            return event
        if text.startswith(":"):
            return None
        field, _, value = text.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
        return None


class SSEStream:
    """An open ``GET /sse`` response, read one event at a time."""

    def __init__(self, response: Any) -> None:
        self._raw = response._response
        if self._raw is None or self._raw._sock is None:
            raise StreamClosed("no response body")
        # Take the socket out of the pool's hands: a read interrupted by a timeout must never hand a
        # half-read stream back to the pool for the next request; close() returns it as spent.
        self._sock = self._raw._sock
        self._pool = getattr(self._raw, "_pool", None)
        if self._pool is not None:
            self._raw._pool = None

    def next_event(self) -> SSEEvent:
        """Block (cooperatively) until the next complete event; comments and blank lines are skipped."""
        parser = SSEParser()
        while True:
            if self._raw is None:
                raise StreamClosed("stream closed")
            line = self._raw.readline(b"\n")
            if not line:
                raise StreamClosed("server ended the stream")
            event = parser.feed(line)
            if event is not None:
                return event

    def close(self, abrupt: bool = False) -> None:
        """Close the connection: ``abrupt`` resets it (RST, unread data dropped), else an orderly FIN.

        The socket goes back to geventhttpclient's pool as "not reusable", which keeps the pool's
        connection count right. Idempotent.
        """
        raw, self._raw = self._raw, None
        sock, pool = self._sock, self._pool
        self._sock = self._pool = None
        if raw is not None:
            raw._sock = None
        if sock is None:
            return
        with contextlib.suppress(OSError):
            if abrupt:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                sock.shutdown(socket.SHUT_RDWR)
        if pool is not None:
            pool.release_socket(sock)
        else:
            with contextlib.suppress(OSError):
                sock.close()
