"""Hypothesis fuzzing of every gateway endpoint: bad input gets a clear 4xx, never a 5xx or a traceback.

How much runs:
    pytest tests/test_fuzz_gateway.py            short form: 100 generated requests per endpoint
    pytest -m slow tests/test_fuzz_gateway.py    full form: 1,000 generated requests per endpoint
    GATEWAY_FUZZ_EXAMPLES=N                      overrides the count of both forms

Each test fuzzes one endpoint (or one kind of abuse: wrong methods, body sizes, malformed HTTP, clients
leaving mid-request) on its own gateway process (bodies limited to ``MAX_BODY`` bytes) and then checks
that no response had a 5xx status, every 4xx came with a JSON-RPC error body naming the problem (except
aiohttp's plain-text 400 for what its HTTP parser refuses before the application: broken framing, unknown
methods, bodies that do not decode as their Content-Encoding says), the gateway's log holds no traceback,
and the gateway still answers ``/healthz``.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import zlib
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from unittest import mock

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from hypothesis import HealthCheck, Phase, assume, example, given, settings
from hypothesis import strategies as st

from gateway_sim import app as gateway_app
from gateway_sim import mcp
from harness.sut.gateway_proc import GatewayProcess
from locustfiles.sse import SSEParser

SHORT_EXAMPLES, FULL_EXAMPLES = 100, 1000
EXAMPLES_ENV = "GATEWAY_FUZZ_EXAMPLES"
MAX_BODY = 8192  # above 4,300: room for an integer too long for int()
GATEWAY_ARGS = ("--max-body-bytes", str(MAX_BODY), "--sse-keepalive", "0.3", "--cleanup-interval", "1")
LOG_ALARMS = (
    "Traceback",
    "Error handling request",
    "unexpected error",
    "backend connection failed",
    "database unavailable",
)
LIVE = "<live session>"  # stands for a session id that exists when the request is sent
UNKNOWN = "fedcba9876543210" * 2
HEX32 = re.compile(r"[0-9a-f]{32}")
T = TypeVar("T")


@pytest.fixture(
    params=[
        pytest.param(SHORT_EXAMPLES, id="short"),
        pytest.param(FULL_EXAMPLES, id="full", marks=pytest.mark.slow),
    ]
)
def examples(request: pytest.FixtureRequest) -> int:
    """Generated requests per endpoint: the form's count, or ``GATEWAY_FUZZ_EXAMPLES``."""
    return int(os.environ.get(EXAMPLES_ENV, request.param))


def fuzz(examples: int, strategy: st.SearchStrategy[T], check: Callable[[T], None], corpus: Sequence[T] = ()) -> None:
    """Run ``check`` on every ``corpus`` case, then on ``examples`` cases drawn from ``strategy``."""

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def run(case: T) -> None:
        check(case)

    for case in reversed(corpus):
        run = example(case)(run)
    run()


# --- the client ------------------------------------------------------------------------------------
@dataclass
class Reply:
    """One HTTP answer."""

    method: str
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class FuzzClient:
    """A raw HTTP client on its own event loop, aimed at one gateway; it checks every answer."""

    def __init__(self, gateway: GatewayProcess) -> None:
        assert gateway.url is not None
        self.gateway = gateway
        self.url = gateway.url
        self.loop = asyncio.new_event_loop()
        self.http = self.run(self._open())
        self.statuses: Counter[int] = Counter()

    async def _open(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())

    async def arequest(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        chunked: bool = False,
    ) -> Reply:
        """Send a request (no Content-Type unless given) and check the answer is no 5xx."""
        data: Any = body
        if chunked and body is not None:

            async def chunks(payload: bytes = body) -> Any:
                for start in range(0, len(payload), 1000):
                    yield payload[start : start + 1000]

            data = chunks()
        encoding = (headers or {}).get("Content-Encoding", "identity")
        try:
            async with self.http.request(
                method,
                self.url + path,
                params=params,
                headers=headers,
                data=data,
                skip_auto_headers=("Content-Type",),
            ) as response:
                reply = Reply(method, response.status, dict(response.headers), await response.read())
        except aiohttp.ClientConnectionError:
            if not chunked or encoding == "identity":
                raise
            # the gateway refused an encoded body early ("Connection: close") while it was still being sent
            reply = Reply(method, CLOSED, {}, b"")
        # aiohttp's HTTP parser refuses an unknown method, or a body that does not decode as its
        # Content-Encoding says, before the application sees the request: a plain-text 400
        self.record(reply, parser_may_refuse=method not in STANDARD_METHODS or encoding != "identity")
        return reply

    def request(self, method: str, path: str, **kw: Any) -> Reply:
        return self.run(self.arequest(method, path, **kw))

    def record(self, reply: Reply, parser_may_refuse: bool = False) -> None:
        """Count the answer; a 5xx fails the test, a 4xx must carry a JSON-RPC error with a message."""
        self.statuses[reply.status] += 1
        assert reply.status < 500, (reply.status, reply.body[:300])
        if reply.status == CLOSED:
            return
        if parser_may_refuse and reply.status == 400 and reply.headers.get("Content-Type", "").startswith("text/"):
            return
        if reply.status >= 400 and reply.method != "HEAD":
            error_message(reply)

    async def live_mcp_session(self) -> str:
        reply = await self.arequest("POST", "/mcp", body=json.dumps(rpc("initialize")).encode(), headers=JSON)
        assert reply.status == 200
        return reply.headers["Mcp-Session-Id"]

    def assert_sound(self, examples: int) -> None:
        """No 5xx, enough requests, a clean log and a healthy gateway."""
        assert self.sent >= examples, self.statuses
        assert not [s for s in self.statuses if s >= 500], self.statuses
        health = self.request("GET", "/healthz")
        assert health.status == 200 and health.json()["status"] == "ok"
        assert self.gateway.alive()
        log = self.gateway.log_path.read_text(encoding="utf-8", errors="replace")
        alarms = [line for line in log.splitlines() if any(alarm in line for alarm in LOG_ALARMS)]
        assert not alarms, "\n".join(alarms[:10])

    def close(self) -> None:
        self.run(self.http.close())
        self.loop.close()


JSON = {"Content-Type": "application/json"}
CLOSED = 0  # status of a request whose connection the gateway closed before it was sent whole
STANDARD_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE")


def rpc(method: str, request_id: Any = 1, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


def error_message(reply: Reply) -> str:
    """The message of the JSON-RPC error object in ``reply``'s body (asserted present and clear)."""
    assert reply.headers.get("Content-Type", "").startswith("application/json"), reply
    body = reply.json()
    assert body["jsonrpc"] == "2.0" and "result" not in body, body
    assert isinstance(body["error"]["code"], int), body
    message = body["error"]["message"]
    assert isinstance(message, str) and len(message) >= 5, body
    return message


@pytest.fixture
def client(start_gateway: Callable[..., GatewayProcess]) -> Any:
    fuzz_client = FuzzClient(start_gateway(*GATEWAY_ARGS))
    yield fuzz_client
    fuzz_client.close()


# --- strategies --------------------------------------------------------------------------------------
TEXT = st.text(max_size=24)
HEADER_TEXT = st.text(st.characters(max_codepoint=0x17F, exclude_categories=("Cc",)), max_size=40).map(str.strip)
JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | TEXT
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
METHODS = st.sampled_from([*mcp.METHODS, "tools/unknown", "resources/list", ""]) | TEXT | JSON_VALUES
SLEEP_SECONDS = (
    st.floats(0, 0.05) | st.floats(min_value=mcp.MAX_SLEEP_SECONDS + 0.001) | st.floats(max_value=-0.001) | JSON_VALUES
)
TOOL_ARGUMENTS = (
    st.fixed_dictionaries({"text": JSON_VALUES}) | st.fixed_dictionaries({"seconds": SLEEP_SECONDS}) | JSON_VALUES
)
PARAMS = (
    st.fixed_dictionaries(
        {},
        optional={
            "name": st.sampled_from(["echo", "sleep", "nope"]) | JSON_VALUES,
            "arguments": TOOL_ARGUMENTS,
            "protocolVersion": JSON_VALUES,
        },
    )
    | JSON_VALUES
)
MESSAGES = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.just("2.0") | JSON_VALUES,
        "id": st.integers() | TEXT | JSON_VALUES,
        "method": METHODS,
        "params": PARAMS,
        "extra": JSON_VALUES,
    },
)


# Known troublemakers: every body-reading test sends each of these first, then the generated cases.
NASTY_BODIES = (
    b"[" * 2000 + b"]" * 2000,
    b'{"a":' * 1500 + b"1" + b"}" * 1500,
    b'{"jsonrpc": "2.0", "id": ' + b"7" * 5000 + b', "method": "ping"}',
    b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"x": ' + b"9" * 4400 + b"}}",
    *(
        b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "sleep", "arguments": {"seconds": '
        + seconds
        + b"}}}"
        for seconds in (b"NaN", b"-Infinity", b"1e999", b"9" * 400)
    ),
    b'{"jsonrpc": "2.0", "id": 1e999, "method": "ping"}',
    b'{"jsonrpc": "2.0", "id": 1, "method": "\xff\xfe"}',
    b'{"jsonrpc": "2.0", "id": "\\ud800", "method": "\\udfff"}',
    b'\xef\xbb\xbf{"jsonrpc": "2.0", "id": 1, "method": "ping"}',
    b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "method": 5}',
    b"",
    b"null",
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """A request body: JSON-RPC of every shape, broken JSON, deep nesting, huge numbers, bad UTF-8."""
    kind = draw(
        st.sampled_from(["message", "message", "message", "value", "truncated", "bytes", "compressed", "nasty"])
    )
    if kind == "message":
        return json.dumps(draw(MESSAGES)).encode()
    if kind == "value":
        return json.dumps(draw(JSON_VALUES | st.lists(MESSAGES, max_size=3))).encode()
    if kind == "truncated":
        text = json.dumps(draw(MESSAGES)).encode()
        return text[: draw(st.integers(0, max(0, len(text) - 1)))]
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "compressed":  # to go with (or against) a Content-Encoding header
        return draw(st.sampled_from([gzip.compress, zlib.compress]))(json.dumps(draw(MESSAGES)).encode())
    return draw(st.sampled_from(NASTY_BODIES))


CONTENT_TYPES = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "APPLICATION/JSON", "text/plain", ""]
) | st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30)
DECODERS: dict[str, Callable[[bytes], bytes]] = {"gzip": gzip.decompress, "deflate": zlib.decompress}
BODY_HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "Content-Type": CONTENT_TYPES,
        "Content-Encoding": st.sampled_from([*DECODERS, "identity", "br", "zstd", "x-unknown"]),
    },
)
JSON_HEADERS_CORPUS = (
    {"Content-Type": "application/json"},
    {"Content-Type": "application/json", "Content-Encoding": "gzip"},
)
# a truncated deflate stream sent in chunks: aiohttp itself would wait for its end forever
DEFLATE_CHUNKED = ({"Content-Encoding": "deflate"}, b"{}", True)
HEADER_SESSION_IDS = st.sampled_from([LIVE, LIVE, UNKNOWN, None, LIVE.upper(), LIVE + "0", "0" * 31, "g" * 32]) | (
    HEADER_TEXT
)
QUERY_SESSION_IDS = HEADER_SESSION_IDS | st.sampled_from([LIVE + "\n", " " + LIVE]) | TEXT
QUERIES = st.dictionaries(st.sampled_from(["session_id", "since", "limit", "x"]) | TEXT, TEXT, max_size=3)


def resolve(session_id: str | None, live: str) -> str | None:
    """Put the live session id where the strategy asked for it."""
    return None if session_id is None else session_id.replace(LIVE, live).replace(LIVE.upper(), live.upper())


def sent_message(body: bytes, headers: dict[str, str]) -> Any:
    """What the server decodes from ``body`` sent with ``headers`` (None if it cannot)."""
    try:
        decode = DECODERS.get(headers.get("Content-Encoding", ""), lambda raw: raw)
        return json.loads(decode(body))
    except (ValueError, RecursionError, OSError, zlib.error):
        return None


def expects_answer(body: bytes, headers: dict[str, str]) -> bool:
    """Whether an accepted ``body`` is a request (has an id) rather than a notification."""
    message = sent_message(body, headers)
    return isinstance(message, dict) and "id" in message


# --- SSE: POST /message and GET /sse -----------------------------------------------------------------
class StreamDrain:
    """An open ``GET /sse`` stream read in the background; counts the answers it carries."""

    def __init__(self, client: FuzzClient) -> None:
        self.client = client
        self.answers = 0
        self.session_id = ""
        self.response: aiohttp.ClientResponse | None = None
        self.task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self.response = await self.client.http.get(f"{self.client.url}/sse")
        assert self.response.status == 200
        endpoint = await self.response.content.readuntil(b"\n\n")
        self.session_id = endpoint.decode().rsplit("session_id=", 1)[1].strip()
        assert HEX32.fullmatch(self.session_id)
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.response is not None
        parser = SSEParser()
        async for line in self.response.content:
            event = parser.feed(line)
            if event is not None and event.event == "message":
                self.answers += 1

    async def wait_for(self, answers: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while self.answers < answers:
                await asyncio.sleep(0.02)

    async def close(self) -> None:
        assert self.task is not None and self.response is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        self.response.close()


def test_fuzz_post_message(client: FuzzClient, examples: int) -> None:
    drain = StreamDrain(client)
    client.run(drain.open())
    expected_answers = 0

    def check(case: tuple[str | None, dict[str, str], str | None, bytes, bool]) -> None:
        nonlocal expected_answers
        session_id, query, headers, body, chunked = case
        params = dict(query)
        params.pop("session_id", None)
        sid = resolve(session_id, drain.session_id)
        if sid is not None:
            params["session_id"] = sid
        reply = client.request(
            "POST",
            "/message",
            params=params,
            headers=headers,
            body=body,
            chunked=chunked,
        )
        assert reply.status in (202, 400, 404, 413, 415, CLOSED), reply
        if reply.status == 202:
            assert reply.json() == {"status": "accepted"}
            expected_answers += expects_answer(body, headers)
        elif reply.status == 404:
            assert "unknown session" in error_message(reply)
        elif reply.status == 413:
            assert "too large" in error_message(reply)

    corpus = [(LIVE, {}, headers, body, False) for body in NASTY_BODIES for headers in JSON_HEADERS_CORPUS]
    corpus.append((LIVE, {}, *DEFLATE_CHUNKED))
    fuzz(examples, st.tuples(QUERY_SESSION_IDS, QUERIES, BODY_HEADERS, bodies(), st.booleans()), check, corpus)
    # every accepted request got its answer on the stream, and the stream still works
    client.run(drain.wait_for(expected_answers))
    client.run(drain.close())
    client.assert_sound(examples)


@dataclass(frozen=True)
class SSECase:
    """How a fuzzed SSE client behaves: what it sends, how much it reads, when it leaves."""

    query: dict[str, str]
    headers: dict[str, str]
    read_bytes: int
    post_then_leave: bool


SSE_CASES = st.builds(
    SSECase,
    query=QUERIES,
    headers=st.dictionaries(st.sampled_from(["Accept", "Last-Event-ID", "Cache-Control", "X-Junk"]), HEADER_TEXT),
    read_bytes=st.integers(0, 300),
    post_then_leave=st.booleans(),
)


def test_fuzz_sse_streams_half_closed(client: FuzzClient, examples: int) -> None:
    async def one(case: SSECase) -> None:
        async with client.http.get(f"{client.url}/sse", params=case.query, headers=case.headers) as response:
            client.statuses[response.status] += 1
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            if case.post_then_leave:
                endpoint = (await response.content.readuntil(b"\n\n")).decode()
                assert endpoint.startswith("event: endpoint\ndata: /message?session_id=")
                message_path = endpoint.split("data: ", 1)[1].strip()
                call = rpc("tools/call", 1, name="sleep", arguments={"seconds": 0.05})
                reply = await client.arequest("POST", message_path, body=json.dumps(call).encode(), headers=JSON)
                assert reply.status == 202
            elif case.read_bytes:
                first = await response.content.read(case.read_bytes)
                assert b"event: endpoint"[: len(first)] == first[:15]
            response.close()  # leave without a goodbye, possibly before the answer

    fuzz(examples, SSE_CASES, lambda case: client.run(one(case)))
    # the server notices every departed client at its next write and removes the session
    client.run(wait_for_sessions(client, 0))
    client.assert_sound(examples)


async def wait_for_sessions(client: FuzzClient, count: int, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            reply = await client.arequest("GET", "/healthz")
            if reply.json()["sessions"] == count:
                return
            await asyncio.sleep(0.1)


# --- Streamable HTTP: POST / DELETE / GET /mcp -------------------------------------------------------
def test_fuzz_post_mcp(client: FuzzClient, examples: int) -> None:
    live = client.run(client.live_mcp_session())

    def check(case: tuple[str | None, dict[str, str], str | None, bytes, bool]) -> None:
        session_id, query, body_headers, body, chunked = case
        sid = resolve(session_id, live)
        headers = {**body_headers, **({"Mcp-Session-Id": sid} if sid is not None else {})}
        reply = client.request("POST", "/mcp", params=query, headers=headers, body=body, chunked=chunked)
        assert reply.status in (200, 202, 400, 404, 413, 415, CLOSED), reply
        if reply.status == 200:
            answer = reply.json()
            assert answer["jsonrpc"] == "2.0" and answer["id"] == sent_message(body, headers).get("id")
            assert ("result" in answer) != ("error" in answer)
            if sid is None:  # only initialize may come without a session; success opens one
                assert ("Mcp-Session-Id" in reply.headers) == ("result" in answer)
        elif reply.status == 404:
            assert "session" in error_message(reply)

    corpus = [
        (sid, {}, hdrs, body, False) for body in NASTY_BODIES for sid in (LIVE, None) for hdrs in JSON_HEADERS_CORPUS
    ]
    corpus.append((LIVE, {}, *DEFLATE_CHUNKED))
    fuzz(examples, st.tuples(HEADER_SESSION_IDS, QUERIES, BODY_HEADERS, bodies(), st.booleans()), check, corpus)
    after = client.request("POST", "/mcp", body=json.dumps(rpc("ping", 5)).encode(), headers={"Mcp-Session-Id": live})
    assert after.status == 200 and after.json()["result"] == {}
    client.assert_sound(examples)


def test_fuzz_delete_and_get_mcp(client: FuzzClient, examples: int) -> None:
    async def one(case: tuple[str, str | None, dict[str, str], bytes]) -> None:
        method, session_id, query, body = case
        sid = resolve(session_id, await client.live_mcp_session()) if session_id and LIVE in session_id else session_id
        headers = {"Mcp-Session-Id": sid} if sid is not None else {}
        reply = await client.arequest(method, "/mcp", params=query, headers=headers, body=body or None)
        if method == "GET":
            assert reply.status == 405 and "POST" in reply.headers["Allow"]
        elif sid is None or not HEX32.fullmatch(sid):
            assert reply.status == 400 and "session id" in error_message(reply)
        elif session_id == LIVE:
            assert reply.status == 200 and reply.json() == {"status": "deleted", "session_id": sid}
        else:
            assert reply.status == 404 and "unknown session" in error_message(reply)

    strategy = st.tuples(
        st.sampled_from(["DELETE", "DELETE", "GET"]), HEADER_SESSION_IDS, QUERIES, st.binary(max_size=64)
    )
    fuzz(examples, strategy, lambda case: client.run(one(case)))
    client.assert_sound(examples)


# --- health, metrics, admin --------------------------------------------------------------------------
ADMIN_KNOB_BODIES = (
    st.dictionaries(
        st.sampled_from(["latency_ms", "jitter_ms", "error_rate"]) | TEXT,
        st.floats() | st.integers() | st.sampled_from([1e999, -1e999, 10**400]) | JSON_VALUES,
        max_size=3,
    ).map(lambda body: json.dumps(body).encode())
    | bodies()
)


def test_fuzz_health_and_metrics(client: FuzzClient, examples: int) -> None:
    def check(case: tuple[str, str, dict[str, str], dict[str, str], bytes]) -> None:
        method, path, query, headers, body = case
        reply = client.request(method, path, params=query, headers=headers, body=body or None)
        if method in ("GET", "HEAD"):
            assert reply.status == 200, reply
            if method == "GET" and path == "/healthz":
                assert reply.json()["status"] == "ok"
            elif method == "GET":
                assert b"mcp_" in reply.body or b"# HELP" in reply.body
        else:
            assert reply.status == 405, reply

    strategy = st.tuples(
        st.sampled_from(["GET", "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]),
        st.sampled_from(["/healthz", "/metrics"]),
        QUERIES,
        st.dictionaries(st.sampled_from(["Accept", "Authorization", "X-Junk", "Accept-Encoding"]), HEADER_TEXT),
        st.binary(max_size=64),
    )
    fuzz(examples, strategy, check)
    client.assert_sound(examples)


ADMIN_PLAIN_ROUTES = (
    ("GET", "/admin/db"),
    ("GET", "/admin/sessions"),
    ("GET", "/admin/latency"),
    ("GET", "/admin/process"),
    ("POST", "/admin/cleanup"),
)


def test_fuzz_admin_routes(client: FuzzClient, examples: int) -> None:
    def check(case: tuple[str, str, dict[str, str], bytes]) -> None:
        method, path, query, body = case
        reply = client.request(method, path, params=query, body=body or None)
        if (method, path) == ("GET", "/admin/cycles"):
            assert reply.status in (200, 400), reply
            if reply.status == 400:
                assert "must be an integer" in error_message(reply)
            else:
                assert isinstance(reply.json()["cycles"], list)
        elif (method, path) == ("POST", "/admin/latency"):
            assert reply.status in (200, 400, 413), reply
            if reply.status == 200:
                sent = json.loads(body or b"{}")
                knobs = reply.json()
                assert all(knobs[name] == float(value) for name, value in sent.items() if value is not None)
        elif (method, path) in ADMIN_PLAIN_ROUTES:
            assert reply.status == 200, reply
        else:
            assert reply.status == 405, reply

    strategy = st.tuples(
        st.sampled_from(["GET", "GET", "POST", "POST", "PUT", "DELETE"]),
        st.sampled_from(["/admin/cycles", "/admin/latency", *(path for _, path in ADMIN_PLAIN_ROUTES)]),
        QUERIES,
        ADMIN_KNOB_BODIES,
    )
    knobs = (b"1e999", b"-Infinity", b"NaN", b"9" * 400, b"1" * 5000, b"true", b'"5"')
    corpus = [
        *[
            ("POST", "/admin/latency", {}, b'{"%s": %s}' % (name, k))
            for name in (b"latency_ms", b"error_rate")
            for k in knobs
        ],
        *[("POST", "/admin/latency", {}, body) for body in NASTY_BODIES],
        *[("GET", "/admin/cycles", {name: "1" * 5000}, b"") for name in ("since", "limit")],
    ]
    fuzz(examples, strategy, check, corpus)
    reset = client.request("POST", "/admin/latency", body=b'{"latency_ms": 0, "jitter_ms": 0, "error_rate": 0}')
    assert reset.status == 200
    client.assert_sound(examples)


# --- anything else: wrong methods, unknown paths, huge bodies, malformed HTTP -------------------------
PATHS = st.sampled_from(
    [
        "/sse",
        "/message",
        "/mcp",
        "/healthz",
        "/metrics",
        "/admin/cycles",
        "/admin/latency",
        "/",
        "/admin",
        "/mcp/",
    ]
) | st.text(max_size=20).map(lambda tail: "/" + tail)


def test_fuzz_wrong_methods_and_paths(client: FuzzClient, examples: int) -> None:
    def check(case: tuple[str, str, dict[str, str], bytes]) -> None:
        method, path, query, body = case
        assume(not (path == "/sse" and method in ("GET", "HEAD")))  # a stream: fuzzed on its own
        reply = client.request(method, path, params=query, body=body or None)
        assert reply.status < 500

    strategy = st.tuples(
        st.sampled_from(STANDARD_METHODS) | st.from_regex(r"[A-Z]{1,12}", fullmatch=True),
        PATHS,
        QUERIES,
        st.binary(max_size=64),
    )
    fuzz(examples, strategy, check)
    client.assert_sound(examples)


def test_fuzz_body_size_limit(client: FuzzClient, examples: int) -> None:
    sse = StreamDrain(client)
    client.run(sse.open())
    mcp_session = client.run(client.live_mcp_session())

    def check(case: tuple[str, int, bool]) -> None:
        path, size, chunked = case
        body = (b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "pad": "' + b"x" * size)[:size]
        headers = dict(JSON)
        if path == "/message":
            path = f"/message?session_id={sse.session_id}"
        elif path == "/mcp":
            headers["Mcp-Session-Id"] = mcp_session
        reply = client.request("POST", path, headers=headers, body=body, chunked=chunked)
        if size > MAX_BODY:
            assert reply.status == 413, reply
            assert f"limit {MAX_BODY} bytes" in error_message(reply)
        else:
            assert reply.status != 413 and reply.status < 500, reply

    strategy = st.tuples(
        st.sampled_from(["/message", "/mcp", "/admin/latency"]),
        st.integers(0, 4 * MAX_BODY) | st.integers(MAX_BODY - 2, MAX_BODY + 2),
        st.booleans(),
    )
    fuzz(examples, strategy, check)
    client.run(sse.close())
    client.assert_sound(examples)


REQUEST_LINES = st.sampled_from(
    [
        b"POST /mcp HTTP/1.1",
        b"POST /message?session_id=" + UNKNOWN.encode() + b" HTTP/1.1",
        b"GET /healthz HTTP/1.1",
        b"GET /healthz HTTP/9.9",
        b"GET /healthz",
        b"POST /mcp HTTP/1.1 extra",
        b"GET \x00/mcp HTTP/1.1",
        b"GARBAGE",
        b"",
    ]
) | st.binary(max_size=40).filter(lambda line: b"\r" not in line and b"\n" not in line)
HEADER_LINES = st.lists(
    st.sampled_from(
        [
            b"Host: 127.0.0.1",
            b"Content-Type: application/json",
            b"Content-Length: 10",
            b"Content-Length: -1",
            b"Content-Length: abc",
            b"Content-Length: 99999999999999999999",
            b"Transfer-Encoding: chunked",
            b"Transfer-Encoding: gzip, chunked",
            b"Content-Encoding: gzip",
            b"Content-Encoding: br",
            b"Content-Encoding: zstd",
            b"Mcp-Session-Id: " + UNKNOWN.encode(),
            b"Mcp-Session-Id: \xff\xfe",
            b"Authorization: Bearer \xff",
            b"Bad Header",
            b": no name",
            b"X-Long: " + b"a" * 9000,
        ]
    )
    | st.binary(max_size=40).filter(lambda line: b"\r" not in line and b"\n" not in line),
    max_size=5,
)
RAW_BODIES = st.sampled_from([b"", b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}', b"zz\r\n", b"5\r\nabc"]) | (
    st.binary(max_size=100)
)


async def raw_exchange(url: str, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes on a fresh connection, close our side, return what the server sent back."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        async with asyncio.timeout(timeout):
            return await reader.read()
    except ConnectionError:
        return b""
    finally:
        writer.close()


def send_raw(client: FuzzClient, data: bytes) -> None:
    """Send ``data`` as is; an answer, if any, must not be a 5xx (CLOSED counts a close without answer)."""
    answer = client.run(raw_exchange(client.url, data))
    status_line = answer.split(b"\r\n", 1)[0]
    status = int(status_line.split()[1]) if status_line else CLOSED
    client.statuses[status] += 1
    assert status < 500, answer[:300]


def test_fuzz_malformed_http(client: FuzzClient, examples: int) -> None:
    def check(case: tuple[bytes, list[bytes], bytes]) -> None:
        request_line, header_lines, body = case
        send_raw(client, b"\r\n".join([request_line, *header_lines]) + b"\r\n\r\n" + body)

    fuzz(examples, st.tuples(REQUEST_LINES, HEADER_LINES, RAW_BODIES), check)
    client.assert_sound(examples)


def test_fuzz_client_leaving_mid_body(client: FuzzClient, examples: int) -> None:
    """A client announces a body and leaves before sending all of it."""

    def check(case: tuple[str, tuple[int, int]]) -> None:
        path, (announced, sent) = case
        head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        send_raw(client, f"{head}Content-Length: {announced}\r\n\r\n".encode() + b"{" * sent)

    strategy = st.tuples(
        st.sampled_from(["/mcp", f"/message?session_id={UNKNOWN}", "/admin/latency"]),
        st.integers(1, MAX_BODY).flatmap(
            lambda announced: st.tuples(st.just(announced), st.integers(0, announced - 1))
        ),
    )
    fuzz(examples, strategy, check)
    client.assert_sound(examples)


@pytest.mark.parametrize(("client_gone", "status"), [(True, 400), (False, 503)])
async def test_connection_error_is_client_left_only_when_the_client_is_gone(client_gone: bool, status: int):
    """A body cut short by the client is a quiet 400; a backend link failing is a logged 503, not 'client left'."""
    transport = mock.Mock()
    transport.is_closing.return_value = client_gone

    async def handler(_: web.Request) -> web.StreamResponse:
        raise ConnectionResetError("Connection lost")

    response = await gateway_app.error_middleware(make_mocked_request("POST", "/mcp", transport=transport), handler)
    assert response.status == status
    assert json.loads(response.body)["error"]["message"]
