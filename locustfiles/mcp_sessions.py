"""MCP session churn against the gateway: SSE and Streamable HTTP users, live cleanup stats, a "DB pool" tab.

Run: ``locust -f locustfiles/mcp_sessions.py --host http://127.0.0.1:8000`` (web UI on 127.0.0.1:8089), or
headless with ``--headless -u 200 -r 20 -t 60s``. Own options (also in the web UI's start form):
``--session-lifetime 5-30 --abrupt-ratio 0.1 --abandon-ratio 0.1 --transport-mix 0.8 --gateway-urls U1,U2
--auth-token T``, and ``--session-log PATH`` for the client-side record of ended sessions.

Each user runs one session after another (the churn):

* ``SSEUser`` opens ``GET /sse``, posts ``initialize``, ``notifications/initialized`` and a few calls to
  ``/message`` and checks every answer on the stream; it holds the session a random lifetime, then closes
  the connection, or (``--abrupt-ratio``) resets it with a request still in flight.
* ``StreamableHTTPUser`` posts ``initialize`` to ``/mcp``, a few calls with ``Mcp-Session-Id``, then
  ``DELETE /mcp``, or (``--abandon-ratio``) leaves without it for the gateway's TTL sweep.

``--transport-mix`` sets the two classes' weights at each test start. The master (or local runner) polls
each gateway's ``/admin/cycles`` and reports cleanup cycles as ``CLEANUP`` requests.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import random
import sys
import time
from typing import Any

import gevent
from geventhttpclient.client import HTTPClientPool
from locust import FastHttpUser, constant, events, task
from locust.env import Environment
from locust.exception import StopUser

from gateway_sim.gc_tuning import DEFAULT_GC_THRESHOLD, tune_gc
from locustfiles import cleanup_stats, observed_cycles, pool_tab
from locustfiles.jsonrpc import Call, check_answer, initialize, notification, random_calls
from locustfiles.options import LoadSettings, add_arguments
from locustfiles.session_log import How, SessionLog
from locustfiles.sse import SSEStream, StreamClosed

log = logging.getLogger(__name__)

ANSWER_TIMEOUT = 30.0
"""Seconds an SSE answer may take before the call counts as failed."""
RETRY_PAUSE = 1.0
"""Pause after a failed session, so a gateway that is down is not hammered in a tight loop."""


class _Load:
    """Per-process state: settings in force, the session log, the round-robin gateway counter."""

    settings = LoadSettings()
    session_log: SessionLog | None = None
    _next = itertools.count()

    @classmethod
    def gateway(cls) -> str:
        urls = cls.settings.gateway_urls
        if not urls:
            raise StopUser("no gateway: give --host or --gateway-urls")
        return urls[next(cls._next) % len(urls)]

    @classmethod
    def record(cls, session_id: str | None, transport: Any, how: How) -> None:
        if session_id and cls.session_log is not None:
            cls.session_log.record(session_id, transport, how)


class SessionBroken(Exception):
    """A session cannot go on; the failure has already been reported to Locust."""


class _SessionUser(FastHttpUser):
    abstract = True
    wait_time = constant(0)
    network_timeout = 600.0
    connection_timeout = 30.0
    # One connection pool per process, shared by all users: idle keep-alive connections for the POSTs are
    # shared instead of one per user, which halves the file descriptors of thousands of SSE users.
    # Each SSE stream holds one slot while open, hence the large bound.
    client_pool = HTTPClientPool(
        concurrency=1_000_000, network_timeout=network_timeout, connection_timeout=connection_timeout
    )

    def on_start(self) -> None:
        self.rng = random.Random(_user_seed())

    def _pause_until(self, deadline: float) -> None:
        delay = deadline - time.monotonic()
        if delay > 0:
            gevent.sleep(delay)

    def _schedule(self, calls: list[Call]) -> tuple[float, float]:
        lo, hi = _Load.settings.lifetime_min, _Load.settings.lifetime_max
        lifetime = self.rng.uniform(lo, hi)
        return time.monotonic() + lifetime, lifetime / (len(calls) + 1)

    def _fire(self, request_type: str, name: str, started: float, length: int, error: str | None) -> None:
        self.environment.events.request.fire(
            request_type=request_type,
            name=name,
            response_time=(time.perf_counter() - started) * 1000.0,
            response_length=length,
            exception=SessionFailure(error) if error else None,
            context={},
        )


class SessionFailure(Exception):
    """A wrong or missing MCP answer (what Locust lists under failures)."""


class SSEUser(_SessionUser):
    """Holds one SSE session at a time; answers are matched on the stream by JSON-RPC id."""

    weight = 4

    @task
    def sse_session(self) -> None:
        settings = _Load.settings
        base = _Load.gateway()
        stream: SSEStream | None = None
        session_id: str | None = None
        how: How = "clean"
        try:
            started = time.perf_counter()
            response = self.client.get(f"{base}/sse", stream=True, name="GET /sse", headers=settings.headers)
            if response.status_code != 200:
                raise SessionBroken
            stream = SSEStream(response)
            session_id, message_url = self._endpoint(stream, base, started)
            self._call(stream, message_url, initialize())
            self._post(message_url, notification("notifications/initialized"), "notifications/initialized")
            calls = random_calls(self.rng, _Load.settings.calls_per_session)
            deadline, gap = self._schedule(calls)
            for n, call in enumerate(calls, 1):
                self._pause_until(deadline - gap * (len(calls) + 1 - n))
                self._call(stream, message_url, call)
            self._pause_until(deadline)
            if self.rng.random() < settings.abrupt_ratio:
                # A request in flight, then a reset: the answer finds the client gone.
                self._post(message_url, Call("ping").body(), "ping")
                how = "abrupt"
                stream.close(abrupt=True)
        except SessionBroken:
            gevent.sleep(RETRY_PAUSE)
        finally:
            if stream is not None:
                stream.close()
            _Load.record(session_id, "sse", how)

    def _endpoint(self, stream: SSEStream, base: str, started: float) -> tuple[str, str]:
        """Wait for ``event: endpoint``; returns (session id, absolute message URL)."""
        error: str | None = None
        path = ""
        try:
            with gevent.Timeout(ANSWER_TIMEOUT, SessionFailure("no endpoint event in time")):
                event = stream.next_event()
            path = event.data
            if event.event != "endpoint" or "session_id=" not in path:
                error = "first event is not the endpoint"
        except (SessionFailure, StreamClosed, OSError) as exc:
            error = str(exc) or type(exc).__name__
        self._fire("SSE", "endpoint (sse)", started, len(path), error)
        if error:
            raise SessionBroken
        # a path (/message?session_id=…) or, from some gateways, an absolute URL
        return path.rsplit("session_id=", 1)[1], path if path.startswith(("http://", "https://")) else f"{base}{path}"

    def _post(self, url: str, body: dict[str, Any], label: str) -> None:
        with self.client.post(
            url,
            json=body,
            name=f"POST /message {label}",
            headers=_Load.settings.headers,
            catch_response=True,
        ) as response:
            if response.status_code != 202:
                response.failure(f"expected 202, got {response.status_code}")
                raise SessionBroken
            response.success()

    def _call(self, stream: SSEStream, url: str, call: Call) -> None:
        """Post ``call`` and wait for its answer on the stream; keepalives are skipped."""
        started = time.perf_counter()
        self._post(url, call.body(), call.name)
        error: str | None = None
        length = 0
        try:
            with gevent.Timeout(ANSWER_TIMEOUT, SessionFailure("no answer on the stream in time")):
                while True:
                    event = stream.next_event()
                    if event.event != "message":
                        continue
                    length = len(event.data)
                    error = check_answer(call, json.loads(event.data))
                    break
        except ValueError:
            error = "answer is not JSON"
        except (SessionFailure, StreamClosed, OSError) as exc:
            error = str(exc) or type(exc).__name__
        self._fire("SSE", f"{call.name} (sse)", started, length, error)
        if error:
            raise SessionBroken


class StreamableHTTPUser(_SessionUser):
    """One Streamable HTTP session at a time: ``initialize``, calls, then ``DELETE /mcp`` or abandon."""

    weight = 1

    @task
    def http_session(self) -> None:
        settings = _Load.settings
        url = f"{_Load.gateway()}/mcp"
        session_id: str | None = None
        how: How = "abandoned"  # unless DELETE /mcp succeeds
        try:
            session_id = self._call(url, settings.headers, initialize())
            headers = {**settings.headers, "Mcp-Session-Id": session_id}
            self._notify(url, headers)
            calls = random_calls(self.rng, _Load.settings.calls_per_session)
            deadline, gap = self._schedule(calls)
            for n, call in enumerate(calls, 1):
                self._pause_until(deadline - gap * (len(calls) + 1 - n))
                self._call(url, headers, call)
            self._pause_until(deadline)
            if self.rng.random() >= settings.abandon_ratio:
                with self.client.delete(url, headers=headers, name="DELETE /mcp", catch_response=True) as r:
                    if r.status_code != 200:
                        r.failure(f"expected 200, got {r.status_code}")
                        raise SessionBroken
                how = "clean"
        except SessionBroken:
            gevent.sleep(RETRY_PAUSE)
        finally:
            _Load.record(session_id, "streamable_http", how)

    def _call(self, url: str, headers: dict[str, str], call: Call) -> str:
        """POST one request; returns the response's ``Mcp-Session-Id`` (or the one sent)."""
        with self.client.post(
            url, json=call.body(), headers=headers, name=f"POST /mcp {call.name}", catch_response=True
        ) as response:
            error: str | None
            if response.status_code != 200:
                error = f"expected 200, got {response.status_code}"
            else:
                try:
                    error = check_answer(call, response.json())
                except ValueError:
                    error = "answer is not JSON"
            session_id = response.headers.get("Mcp-Session-Id") or headers.get("Mcp-Session-Id")
            if error is None and not session_id:
                error = "initialize answer lacks Mcp-Session-Id"
            if error:
                response.failure(error)
                raise SessionBroken
            response.success()
            return str(session_id)

    def _notify(self, url: str, headers: dict[str, str]) -> None:
        body = notification("notifications/initialized")
        with self.client.post(
            url, json=body, headers=headers, name="POST /mcp notifications/initialized", catch_response=True
        ) as response:
            if response.status_code != 202:
                response.failure(f"expected 202, got {response.status_code}")
                raise SessionBroken
            response.success()


# --- wiring ------------------------------------------------------------------------------------------
def _apply_settings(environment: Environment) -> None:
    """Parse the options in force and set the transport weights; raises ValueError on bad input."""
    settings = LoadSettings.from_options(environment.parsed_options, environment.host)
    _Load.settings = settings
    # A worker learns --session-log from the master's options at the test start.
    current = _Load.session_log.path if _Load.session_log else None
    if settings.session_log != current:
        if _Load.session_log is not None:
            _Load.session_log.close()
        _Load.session_log = SessionLog(settings.session_log) if settings.session_log else None
    SSEUser.weight = settings.transport_mix  # type: ignore[assignment]
    StreamableHTTPUser.weight = 1.0 - settings.transport_mix  # type: ignore[assignment]


_SEED = os.environ.get("MCP_LOADTEST_SEED")  # set by `harness run --seed N`
_user_numbers = itertools.count()


def _user_seed() -> str | None:
    """A distinct, repeatable seed per user when the run has a seed; None (random) otherwise."""
    return None if _SEED is None else f"{_SEED}:{next(_user_numbers)}"


@events.init_command_line_parser.add_listener
def _on_parser(parser: Any, **_kw: Any) -> None:
    add_arguments(parser)
    # The web UI can start load against any host: serve it on loopback unless --web-host says otherwise.
    parser.set_defaults(web_host="127.0.0.1")


@events.init.add_listener
def _on_init(environment: Environment, **_kw: Any) -> None:
    try:
        _apply_settings(environment)
    except ValueError as exc:
        print(f"locust: error: {exc}", file=sys.stderr)
        sys.exit(2)
    observed_cycles.start(environment, str(getattr(environment.parsed_options, "observe_db_url", "") or ""))
    poller = cleanup_stats.start(environment, lambda: _Load.settings.gateway_urls)
    if poller is not None and environment.web_ui is not None:
        pool_tab.install(environment.web_ui, poller)
    tune_gc(DEFAULT_GC_THRESHOLD)  # the load process's collector as the gateway's: Locust is up, freeze what it holds


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_kw: Any) -> None:
    # The web UI's start form may have changed the options since start-up.
    try:
        _apply_settings(environment)
    except ValueError as exc:
        log.error("bad option, test not started: %s", exc)
        if environment.runner is not None:
            gevent.spawn_later(0, environment.runner.stop)


@events.quitting.add_listener
def _on_quitting(environment: Environment, **_kw: Any) -> None:
    if _Load.session_log is not None:
        _Load.session_log.close()
        _Load.session_log = None
