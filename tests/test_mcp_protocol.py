"""The MCP transports end to end: a real HTTP client against a real gateway process.

SSE: ``endpoint`` event first, ``POST /message`` → 202, answers as ``event: message``, keepalives.
Streamable HTTP: ``initialize`` → ``Mcp-Session-Id``, calls carry it, ``DELETE`` ends it.
JSON-RPC error codes and HTTP statuses for bad input (never a 5xx).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock

import aiohttp
import pytest

from gateway_sim import mcp
from locustfiles.sse import SSEParser

SESSION_ID = re.compile(r"[0-9a-f]{32}")
UNKNOWN_SESSION = "0123456789abcdef" * 2
JSON_CT = {"Content-Type": "application/json"}


def rpc(method: str, request_id: Any = 1, **params: Any) -> dict[str, Any]:
    """A JSON-RPC 2.0 request (a notification when ``request_id`` is None)."""
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    if request_id is not None:
        message["id"] = request_id
    return message


class SSEStream:
    """Server-sent events read from an open ``GET /sse`` response."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next_event(self, timeout: float = 10.0) -> tuple[str, str]:
        """The next event as ``(event, data)``; EOFError when the stream ends."""
        parser = SSEParser()
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    raise EOFError("the SSE stream ended")
                event = parser.feed(raw)
                if event is not None and event.data:
                    return event.event, event.data

    async def next_message(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next ``event: message`` payload, skipping keepalives."""
        while True:
            event, data = await self.next_event(timeout)
            if event == "message":
                return json.loads(data)


@dataclass
class SSESession:
    """An open SSE session: its stream, id and message URL."""

    stream: SSEStream
    session_id: str
    message_url: str


@asynccontextmanager
async def open_sse(
    http: aiohttp.ClientSession, base_url: str, headers: dict[str, str] | None = None
) -> AsyncIterator[SSESession]:
    """``GET /sse`` and read the ``endpoint`` event, which must come first."""
    async with http.get(f"{base_url}/sse", headers=headers) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        stream = SSEStream(response)
        event, data = await stream.next_event()
        assert event == "endpoint"
        path, _, session_id = data.partition("?session_id=")
        assert path == "/message"
        assert SESSION_ID.fullmatch(session_id), data
        yield SSESession(stream, session_id, f"{base_url}{data}")


async def sse_call(http: aiohttp.ClientSession, session: SSESession, message: dict[str, Any]) -> dict[str, Any]:
    """POST a request to the session's message URL (202) and read its answer from the stream."""
    async with http.post(session.message_url, json=message) as response:
        assert response.status == 202, await response.text()
        assert (await response.json())["status"] == "accepted"
    answer = await session.stream.next_message()
    assert answer["id"] == message["id"]
    return answer


async def mcp_post(
    http: aiohttp.ClientSession, base_url: str, body: Any, session_id: str | None = None, **kw: Any
) -> tuple[int, dict[str, str], Any]:
    """``POST /mcp``: status, headers and the decoded JSON body."""
    headers = {"Mcp-Session-Id": session_id} if session_id is not None else {}
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    headers.setdefault("Content-Type", "application/json")
    headers.update(kw.pop("headers", {}))
    async with http.post(f"{base_url}/mcp", data=data, headers=headers, **kw) as response:
        assert response.content_type == "application/json", await response.text()
        return response.status, dict(response.headers), await response.json()


def assert_error(body: dict[str, Any], code: int, request_id: Any = None) -> str:
    """``body`` is a JSON-RPC error with ``code``; returns its message."""
    assert body["jsonrpc"] == "2.0"
    assert body["id"] == request_id
    assert body["error"]["code"] == code, body
    message = body["error"]["message"]
    assert isinstance(message, str) and message
    return message


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


# --- SSE ---------------------------------------------------------------------------------------------
async def test_sse_flow_answers_every_method_on_the_stream(start_gateway, http):
    gw = start_gateway("--sse-keepalive", "0.5")
    async with open_sse(http, gw.url) as session:
        init = await sse_call(http, session, rpc("initialize", 1, protocolVersion=mcp.PROTOCOL_VERSION))
        result = init["result"]
        assert result["protocolVersion"] == mcp.PROTOCOL_VERSION
        assert "tools" in result["capabilities"]
        assert result["serverInfo"]["name"]

        async with http.post(session.message_url, json=rpc("notifications/initialized", None)) as resp:
            assert resp.status == 202

        assert (await sse_call(http, session, rpc("ping", "p-1")))["result"] == {}
        tools = (await sse_call(http, session, rpc("tools/list", 2)))["result"]["tools"]
        assert {"echo", "sleep"} <= {tool["name"] for tool in tools}

        echo = await sse_call(http, session, rpc("tools/call", 3, name="echo", arguments={"text": "hé"}))
        assert echo["result"]["content"] == [{"type": "text", "text": "hé"}]
        slept = await sse_call(http, session, rpc("tools/call", 4, name="sleep", arguments={"seconds": 0.05}))
        assert slept["result"]["content"][0]["text"].startswith("slept")

        too_long = rpc("tools/call", 5, name="sleep", arguments={"seconds": mcp.MAX_SLEEP_SECONDS + 1})
        assert "between" in assert_error(await sse_call(http, session, too_long), mcp.INVALID_PARAMS, 5)
        unknown = await sse_call(http, session, rpc("tools/unknown", 6))
        assert "tools/unknown" in assert_error(unknown, mcp.METHOD_NOT_FOUND, 6)


async def test_sse_keepalives_arrive_between_messages(start_gateway, http):
    gw = start_gateway("--sse-keepalive", "0.5")
    async with open_sse(http, gw.url) as session:
        events = [await session.stream.next_event(timeout=5) for _ in range(3)]
    assert [event for event, _ in events] == ["keepalive"] * 3


async def test_sse_bad_input_is_refused_on_the_post(start_gateway, http):
    gw = start_gateway("--sse-keepalive", "0.5")
    async with open_sse(http, gw.url) as session:
        truncated = b'{"jsonrpc": "2.0", "id": 1,'
        async with http.post(session.message_url, data=truncated, headers=JSON_CT) as resp:
            assert resp.status == 400
            assert_error(await resp.json(), mcp.PARSE_ERROR)
        bad_params = {"jsonrpc": "2.0", "id": 7, "method": "ping", "params": [1, 2]}
        async with http.post(session.message_url, json=bad_params) as resp:
            assert resp.status == 400
            assert_error(await resp.json(), mcp.INVALID_PARAMS, 7)
        async with http.post(f"{gw.url}/message?session_id={UNKNOWN_SESSION}", json=rpc("ping")) as resp:
            assert resp.status == 404
            assert UNKNOWN_SESSION in assert_error(await resp.json(), -32000)
        sid = session.session_id
        for bad in ("xyz", sid.upper(), sid + "0", sid + "\n", ""):
            async with http.post(f"{gw.url}/message", params={"session_id": bad}, json=rpc("ping")) as resp:
                assert resp.status == 400, bad
                assert "session id" in assert_error(await resp.json(), mcp.INVALID_REQUEST)
        # the session still works after all that
        assert (await sse_call(http, session, rpc("ping", 8)))["result"] == {}


async def test_sse_client_leaving_ends_its_session(start_gateway, http):
    gw = start_gateway("--sse-keepalive", "0.2")
    async with open_sse(http, gw.url) as session, http.get(f"{gw.url}/healthz") as resp:
        assert (await resp.json())["sessions"] == 1
    # the next keepalive write notices the closed socket and removes the session
    for _ in range(50):
        async with http.get(f"{gw.url}/healthz") as resp:
            if (await resp.json())["sessions"] == 0:
                break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("the SSE session outlived its client")
    async with http.post(session.message_url, json=rpc("ping")) as resp:
        assert resp.status == 404


async def test_an_answer_that_finds_its_client_gone_ends_the_session(start_gateway, http):
    """Answers are written straight from the POST: one written to a reset stream removes the session
    (``stream_closed``), as a failed keepalive does."""
    gw = start_gateway("--sse-keepalive", "300", "--cleanup-interval", "300")
    host, port = gw.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET /sse HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode())
        received = b""
        while b"event: endpoint" not in received or not received.endswith(b"\r\n"):
            chunk = sock.recv(4096)
            assert chunk, f"stream ended before its endpoint event: {received!r}"
            received += chunk
        session_id = re.search(rb"session_id=([0-9a-f]{32})", received).group(1).decode()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
    message_url = f"{gw.url}/message?session_id={session_id}"
    for _ in range(50):
        async with http.post(message_url, json=rpc("ping")) as resp:
            if resp.status == 404:  # the session is gone
                break
            assert resp.status == 202
        await asyncio.sleep(0.1)
    else:
        pytest.fail("answers to a reset stream did not end its session")
    async with http.get(f"{gw.url}/admin/cycles") as resp:
        sessions = (await resp.json())["sessions"]
    assert sessions["active"] == 0
    assert sessions["removed_by_reason"] == {"stream_closed": 1}


# --- Streamable HTTP ---------------------------------------------------------------------------------
async def test_streamable_http_flow_from_initialize_to_delete(start_gateway, http):
    gw = start_gateway()
    status, headers, body = await mcp_post(http, gw.url, rpc("initialize", "init"))
    assert status == 200
    session_id = headers["Mcp-Session-Id"]
    assert SESSION_ID.fullmatch(session_id)
    assert body["result"]["protocolVersion"] == mcp.PROTOCOL_VERSION
    assert body["result"]["serverInfo"] == mcp.SERVER_INFO

    status, _, body = await mcp_post(http, gw.url, rpc("notifications/initialized", None), session_id)
    assert status == 202
    status, _, body = await mcp_post(http, gw.url, rpc("ping", 2), session_id)
    assert (status, body["id"], body["result"]) == (200, 2, {})
    _, _, body = await mcp_post(http, gw.url, rpc("tools/list", 3), session_id)
    assert {tool["name"] for tool in body["result"]["tools"]} >= {"echo", "sleep"}
    echo = rpc("tools/call", 4, name="echo", arguments={"text": "x"})
    _, _, body = await mcp_post(http, gw.url, echo, session_id)
    assert body["result"]["content"][0]["text"] == "x"
    _, _, body = await mcp_post(http, gw.url, rpc("tools/call", 5, name="sleep", arguments={"seconds": -1}), session_id)
    assert_error(body, mcp.INVALID_PARAMS, 5)

    async with http.delete(f"{gw.url}/mcp", headers={"Mcp-Session-Id": session_id}) as resp:
        assert resp.status == 200
        assert (await resp.json())["session_id"] == session_id
    status, _, body = await mcp_post(http, gw.url, rpc("ping", 6), session_id)
    assert status == 404
    assert session_id in assert_error(body, -32000)
    async with http.delete(f"{gw.url}/mcp", headers={"Mcp-Session-Id": session_id}) as resp:
        assert resp.status == 404


async def test_streamable_http_error_codes(start_gateway, http):
    gw = start_gateway()
    _, headers, _ = await mcp_post(http, gw.url, rpc("initialize"))
    sid = headers["Mcp-Session-Id"]

    status, _, body = await mcp_post(http, gw.url, rpc("resources/list", 11), sid)
    assert status == 200
    assert "resources/list" in assert_error(body, mcp.METHOD_NOT_FOUND, 11)
    status, _, body = await mcp_post(http, gw.url, b"{not json", sid)
    assert status == 400
    assert "Parse error" in assert_error(body, mcp.PARSE_ERROR)
    status, _, body = await mcp_post(http, gw.url, b'{"jsonrpc": "2.0", "id": ' + b"9" * 5000 + b"}", sid)
    assert status == 400
    assert "digits" in assert_error(body, mcp.PARSE_ERROR)
    scalar_params = {"jsonrpc": "2.0", "id": 12, "method": "ping", "params": 3}
    status, _, body = await mcp_post(http, gw.url, scalar_params, sid)
    assert status == 400
    assert_error(body, mcp.INVALID_PARAMS, 12)
    status, _, body = await mcp_post(http, gw.url, rpc("tools/call", 13, name=["echo"]), sid)
    assert status == 200
    assert_error(body, mcp.INVALID_PARAMS, 13)
    status, _, body = await mcp_post(http, gw.url, {"jsonrpc": "1.0", "id": 14, "method": "ping"}, sid)
    assert status == 400
    assert_error(body, mcp.INVALID_REQUEST, 14)
    status, _, body = await mcp_post(http, gw.url, [rpc("ping")], sid)
    assert status == 400
    assert "batch" in assert_error(body, mcp.INVALID_REQUEST)

    status, _, body = await mcp_post(http, gw.url, rpc("ping"), UNKNOWN_SESSION)
    assert status == 404
    assert UNKNOWN_SESSION in assert_error(body, -32000)
    for malformed in ("nope", sid[:-1], sid + "a", sid.upper(), " " * 3):
        status, _, body = await mcp_post(http, gw.url, rpc("ping"), malformed)
        assert status == 400, malformed
        assert "session id" in assert_error(body, mcp.INVALID_REQUEST)
    status, _, body = await mcp_post(http, gw.url, rpc("ping", 15))
    assert status == 400
    assert "Mcp-Session-Id" in assert_error(body, mcp.INVALID_REQUEST, 15)
    status, _, body = await mcp_post(http, gw.url, rpc("ping"), sid, headers={"Content-Type": "text/plain"})
    assert status == 415
    assert "Content-Type" in assert_error(body, mcp.INVALID_REQUEST)
    status, _, body = await mcp_post(http, gw.url, rpc("ping"), sid, headers={"Content-Encoding": "br"})
    assert status == 415
    assert "Content-Encoding" in assert_error(body, -32000)

    async with http.get(f"{gw.url}/mcp") as resp:
        assert resp.status == 405
        assert "POST" in resp.headers["Allow"]
        assert_error(await resp.json(), -32000)
    async with http.delete(f"{gw.url}/mcp") as resp:
        assert resp.status == 400
        assert "missing session id" in assert_error(await resp.json(), mcp.INVALID_REQUEST)
    # the session survived the bad requests
    status, _, body = await mcp_post(http, gw.url, rpc("ping", 16), sid)
    assert (status, body["result"]) == (200, {})


def test_sse_events_are_compact_utf8_json_and_keep_ids_beyond_64_bits() -> None:
    from gateway_sim.transports import sse_event

    parser = SSEParser()
    big = {"jsonrpc": "2.0", "id": 2**70, "result": {"text": "café"}}
    stream = sse_event("message", big) + sse_event("message", {"id": 1, "result": {"text": "é"}})
    events = [e for e in map(parser.feed, stream.split(b"\n")) if e is not None]
    assert [json.loads(e.data) for e in events] == [big, {"id": 1, "result": {"text": "é"}}]
    assert sse_event("message", {"a": 1}) == b'event: message\ndata: {"a":1}\n\n'
    assert sse_event("endpoint", "/message?session_id=x") == b"event: endpoint\ndata: /message?session_id=x\n\n"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"jsonrpc":"2.0","id":1180591620717411303424,"method":"echo","params":{"n":36893488147419103232}}',
         (2**70, {"n": 2**65})),
        (b'{"jsonrpc":"2.0","id":7,"method":"echo","params":{"x":NaN,"s":"\\ud800"}}', (7, {"x": None, "s": "\ud800"})),
        (b'{"jsonrpc":"2.0","id":"a","method":"echo","params":{"text":"caf\xc3\xa9","f":1.5}}',
         ("a", {"text": "café", "f": 1.5})),
    ],
)
def test_bodies_decode_as_the_standard_library_decodes_them(body: bytes, expected: tuple[Any, dict[str, Any]]) -> None:
    """Integers beyond 64 bits stay exact, NaN and lone surrogates are taken: the fast decoder changes no value."""
    request = mcp.parse_body(body)
    assert request.id == expected[0]
    params = {k: (None if isinstance(v, float) and v != v else v) for k, v in request.params.items()}
    assert params == expected[1]
    assert all(type(request.params[k]) is type(v) for k, v in expected[1].items() if v is not None)


def test_an_event_stream_sends_its_headers_with_its_first_event() -> None:
    """``GET /sse``'s headers and its ``endpoint`` event leave in one send, not two."""
    from aiohttp.http_writer import StreamWriter
    from aiohttp.test_utils import make_mocked_request

    from gateway_sim.app import EventStreamResponse

    async def scenario() -> list[bytes]:
        sent: list[bytes] = []
        transport = mock.Mock()
        transport.is_closing.return_value = False
        transport.write.side_effect = lambda data: sent.append(bytes(data))
        transport.writelines.side_effect = lambda chunks: sent.append(b"".join(bytes(c) for c in chunks))
        protocol = mock.Mock(transport=transport, _reading_paused=False)
        writer = StreamWriter(protocol, asyncio.get_running_loop())
        request = make_mocked_request("GET", "/sse", writer=writer, transport=transport, protocol=protocol)
        response = EventStreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        assert sent == []
        await response.write(b"event: endpoint\ndata: /message?session_id=x\n\n")
        return sent

    sent = asyncio.run(scenario())
    assert len(sent) == 1
    assert sent[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"event: endpoint\ndata: /message?session_id=x\n\n" in sent[0]
