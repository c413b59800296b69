"""A TCP proxy that adds L±J ms to every client→server round trip, as a remote database would.

Each chunk the client sends is stamped on arrival with a due time (now + a delay drawn from the
current L±J) and queued per connection; a writer task forwards it when due, in order, so a later
chunk never overtakes an earlier one. A request therefore pays one delay, and an ORM transaction of
SELECT + UPDATE + COMMIT pays one per statement. Server→client bytes pass straight through.

The proxy runs its own asyncio loop in a background thread so synchronous code can drive it; a small
control endpoint (``GET``/``POST /latency``) lets another process change the latency live.

Run alone::

    python -m harness.sut.latency_proxy --upstream 127.0.0.1:5432 --listen 127.0.0.1:0 --latency-ms 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import random
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

READ_SIZE = 65536
QUEUE_CHUNKS = 64  # per-connection bound on delayed chunks: a full queue stops reading the client


@dataclass(frozen=True)
class ProxyStats:
    """Counters of one proxy since :meth:`LatencyProxy.start`."""

    connections_open: int
    connections_total: int
    upstream_errors: int
    bytes_to_server: int
    bytes_to_client: int
    delayed_chunks: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def validate_latency(latency_ms: object, jitter_ms: object = 0.0) -> tuple[float, float]:
    """Return ``(latency_ms, jitter_ms)`` as floats; ValueError unless both are finite numbers ≥ 0."""
    values = []
    for name, value in (("latency_ms", latency_ms), ("jitter_ms", jitter_ms)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number, got {value!r}")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        values.append(float(value))
    return values[0], values[1]


def parse_latency_body(body: object, current: tuple[float, float]) -> tuple[float, float]:
    """Validate a control body ``{"latency_ms": L, "jitter_ms": J}``; a missing or null key is kept."""
    if not isinstance(body, Mapping) or not body:
        raise ValueError("expected a JSON object with latency_ms and/or jitter_ms")
    unknown = set(body) - {"latency_ms", "jitter_ms"}
    if unknown:
        raise ValueError(f"unknown keys: {', '.join(sorted(map(str, unknown)))}")
    latency, jitter = (body.get(name) for name in ("latency_ms", "jitter_ms"))  # null: leave as it is
    return validate_latency(
        current[0] if latency is None else latency, current[1] if jitter is None else jitter
    )


class _Connection:
    """One proxied client connection: a delayed client→server pump and a direct server→client pump."""

    def __init__(
        self, proxy: LatencyProxy, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        self.proxy = proxy
        self.client_reader = client_reader
        self.client_writer = client_writer
        self.queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(QUEUE_CHUNKS)

    async def run(self, upstream_reader: asyncio.StreamReader, upstream_writer: asyncio.StreamWriter) -> None:
        stamp = asyncio.create_task(self._stamp_client_chunks())
        send = asyncio.create_task(self._send_when_due(upstream_writer))
        back = asyncio.create_task(self._pass_through(upstream_reader))
        tasks = (stamp, send, back)
        try:
            # The server closing ends the connection. The client closing is passed on as a
            # half-close once its last chunk is delivered; the server's goodbye still comes back.
            done, _ = await asyncio.wait((send, back), return_when=asyncio.FIRST_COMPLETED)
            if back not in done and send.result():
                await back
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for writer in (upstream_writer, self.client_writer):
                writer.close()
            for writer in (upstream_writer, self.client_writer):
                with contextlib.suppress(OSError, ConnectionError):
                    await writer.wait_closed()

    async def _stamp_client_chunks(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError, ConnectionError):
            while data := await self.client_reader.read(READ_SIZE):
                await self.queue.put((loop.time() + self.proxy._draw_delay_s(), data))
        await self.queue.put(None)

    async def _send_when_due(self, writer: asyncio.StreamWriter) -> bool:
        """Forward queued chunks when due; True once the client's end was passed on as a half-close."""
        loop = asyncio.get_running_loop()
        try:
            while (item := await self.queue.get()) is not None:
                due, data = item
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
                self.proxy._count(to_server=len(data))
            if not writer.can_write_eof():
                return False
            writer.write_eof()
            return True
        except (OSError, ConnectionError):
            return False

    async def _pass_through(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(READ_SIZE):
                self.client_writer.write(data)
                await self.client_writer.drain()
                self.proxy._count(to_client=len(data))


class LatencyProxy:
    """TCP proxy adding ``latency_ms`` ± ``jitter_ms`` to each client→server round trip; a context manager.

    ``start()`` returns the listening ``(host, port)``; ``stop()`` closes every connection, the
    listener, the control endpoint and the loop thread. ``control_port`` ``None`` runs no control
    endpoint, ``0`` picks a free port (see :attr:`control_url`).
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        latency_ms: float = 0.0,
        jitter_ms: float = 0.0,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        control_port: int | None = None,
        seed: int | None = None,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listen = (listen_host, listen_port)
        self._control_port = control_port
        self._delay: tuple[float, float] = validate_latency(latency_ms, jitter_ms)  # replaced whole
        self._random = random.Random(seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._control: web.AppRunner | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._address: tuple[str, int] | None = None
        self._control_address: tuple[str, int] | None = None
        self._counters = dict.fromkeys(
            ("connections_total", "upstream_errors", "bytes_to_server", "bytes_to_client", "delayed_chunks"),
            0,
        )

    # --- public API ---------------------------------------------------------------------------------
    @property
    def latency_ms(self) -> float:
        return self._delay[0]

    @property
    def jitter_ms(self) -> float:
        return self._delay[1]

    @property
    def address(self) -> tuple[str, int]:
        """The listening ``(host, port)``; only after :meth:`start`."""
        if self._address is None:
            raise RuntimeError("the proxy is not started")
        return self._address

    @property
    def control_url(self) -> str | None:
        """``http://127.0.0.1:PORT`` of the control endpoint, or None when it is not running."""
        if self._control_address is None:
            return None
        return f"http://{self._control_address[0]}:{self._control_address[1]}"

    def set_latency(self, latency_ms: float, jitter_ms: float | None = None) -> None:
        """Change L (and J unless None) live; thread-safe; applies to the next chunk of every connection."""
        self._delay = validate_latency(latency_ms, self._delay[1] if jitter_ms is None else jitter_ms)

    def stats(self) -> ProxyStats:
        return ProxyStats(connections_open=len(self._connections), **self._counters)

    def start(self) -> tuple[str, int]:
        """Start the loop thread, the listener and the control endpoint; return the listening address."""
        if self._address is not None:
            return self._address
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="latency-proxy", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            asyncio.run_coroutine_threadsafe(self._open(), loop).result(timeout=30)
        except BaseException:
            self.stop()
            raise
        assert self._address is not None
        log.info("latency proxy %s:%d -> %s:%d", *self._address, *self.upstream)
        return self._address

    def stop(self) -> None:
        """Close every connection, the listener, the control endpoint and the loop thread; idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            if loop.is_running():
                asyncio.run_coroutine_threadsafe(self._close(), loop).result(timeout=30)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
            loop.close()
            self._loop = self._thread = None
            self._address = self._control_address = None

    def __enter__(self) -> LatencyProxy:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- inside the loop thread ----------------------------------------------------------------------
    def _draw_delay_s(self) -> float:
        latency, jitter = self._delay
        self._counters["delayed_chunks"] += 1
        if jitter:
            latency += self._random.uniform(-jitter, jitter)
        return max(0.0, latency) / 1000.0

    def _count(self, to_server: int = 0, to_client: int = 0) -> None:
        self._counters["bytes_to_server"] += to_server
        self._counters["bytes_to_client"] += to_client

    async def _open(self) -> None:
        self._server = await asyncio.start_server(self._accept, *self._listen)
        host, port = self._server.sockets[0].getsockname()[:2]
        self._address = (host, port)
        if self._control_port is not None:
            self._control = web.AppRunner(self._control_app(), access_log=None)
            await self._control.setup()
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("127.0.0.1", self._control_port))
            except OSError:
                sock.close()
                raise
            await web.SockSite(self._control, sock).start()
            self._control_address = sock.getsockname()[:2]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._control is not None:
            await self._control.cleanup()
            self._control = None
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        self._counters["connections_total"] += 1
        try:
            try:
                upstream = await asyncio.open_connection(*self.upstream)
            except OSError as exc:
                self._counters["upstream_errors"] += 1
                log.warning("latency proxy: upstream %s:%d unreachable: %s", *self.upstream, exc)
                return
            await _Connection(self, reader, writer).run(*upstream)
        except asyncio.CancelledError:
            pass  # stop(): the connection task ends here rather than report a cancellation to asyncio
        finally:
            writer.close()
            self._connections.discard(task)

    def _control_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/latency", self._get_latency)
        app.router.add_post("/latency", self._post_latency)
        app.router.add_get("/stats", self._get_stats)
        return app

    def _latency_json(self) -> web.Response:
        return web.json_response({"latency_ms": self.latency_ms, "jitter_ms": self.jitter_ms})

    async def _get_latency(self, request: web.Request) -> web.Response:
        return self._latency_json()

    async def _post_latency(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read() or b"null")
            self.set_latency(*parse_latency_body(body, self._delay))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return web.json_response({"error": "body must be a JSON object"}, status=400)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return self._latency_json()

    async def _get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats().as_dict())


# --- measuring ----------------------------------------------------------------------------------------
def time_round_trips(target: tuple[str, int] | psycopg.Connection[Any], count: int) -> list[float]:
    """Milliseconds of ``count`` ``SELECT 1`` round trips to Postgres.

    ``target`` is an open psycopg connection in autocommit mode, or a ``(host, port)`` to open one
    on (database and user ``postgres``). One query warms the connection up first, so connecting is
    never part of the figures.
    """
    import psycopg

    if isinstance(target, tuple):
        host, port = target
        with psycopg.connect(
            host=host, port=port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            return time_round_trips(conn, count)
    target.execute("SELECT 1").fetchone()
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        target.execute("SELECT 1").fetchone()
        samples.append((time.perf_counter() - started) * 1000.0)
    return samples


# --- command line -------------------------------------------------------------------------------------
def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` → ``(host, port)``; ValueError with a one-line message otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _address_arg(text: str) -> tuple[str, int]:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    from harness.cli import CliParser  # one-line errors, exit 2, like every harness command

    parser = CliParser(prog="python -m harness.sut.latency_proxy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", type=_address_arg, required=True, help="Postgres HOST:PORT")
    parser.add_argument(
        "--listen", type=_address_arg, default=("127.0.0.1", 0), help="HOST:PORT (port 0 picks)"
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added per round trip (default 0)")
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="± uniform jitter (default 0)")
    parser.add_argument(
        "--control-port", type=int, default=None, help="control HTTP port on 127.0.0.1 (0 picks)"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the jitter draws")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the proxy until SIGINT/SIGTERM."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level="WARNING", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        proxy = LatencyProxy(
            *args.upstream,
            latency_ms=args.latency_ms,
            jitter_ms=args.jitter_ms,
            listen_host=args.listen[0],
            listen_port=args.listen[1],
            control_port=args.control_port,
            seed=args.seed,
        )
        if args.control_port is not None and not 0 <= args.control_port <= 65535:
            raise ValueError(f"--control-port must be 0..65535, got {args.control_port}")
    except ValueError as exc:
        parser.error(str(exc))
    done = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        done.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    try:
        host, port = proxy.start()
    except OSError as exc:
        print(f"{parser.prog}: error: cannot listen: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        print(f"proxy: {host}:{port}", flush=True)
        if proxy.control_url:
            print(f"control: {proxy.control_url}", flush=True)
        done.wait()
    finally:
        proxy.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
