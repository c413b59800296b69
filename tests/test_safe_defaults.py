"""Safe defaults of the gateway: loopback bind, bearer tokens, random session ids, admin routes, SQL.

Each property is checked on a real gateway process where it can be, and on the code itself otherwise
(the loopback check of the admin routes with a faked peer address; SQL statements by their syntax tree).
"""

from __future__ import annotations

import ast
import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import aiohttp
import psutil
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from gateway_sim import admin as gateway_admin
from gateway_sim import app as gateway_app
from gateway_sim.cli import build_parser
from gateway_sim.config import GatewayConfig, StoreConfig
from harness.sut.gateway_proc import GatewayProcess
from tests import test_mcp_protocol
from tests.test_mcp_protocol import SESSION_ID, assert_error, open_sse, rpc

http = test_mcp_protocol.http  # the aiohttp client fixture
TOKEN = "s3cret-token-0123"
GATEWAY_SIM = Path(gateway_app.__file__).parent
ADMIN_ROUTES = (
    ("GET", "/admin/cycles"),
    ("GET", "/admin/db"),
    ("GET", "/admin/sessions"),
    ("GET", "/admin/latency"),
    ("POST", "/admin/latency"),
    ("POST", "/admin/cleanup"),
    ("GET", "/admin/process"),
)


# --- loopback bind -----------------------------------------------------------------------------------
def test_help_names_loopback_as_the_default_host():
    help_text = subprocess.run(
        [sys.executable, "-m", "gateway_sim", "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "default 127.0.0.1" in " ".join(help_text.split())
    assert build_parser().parse_args(["--db-url", "postgresql://x/y"]).host == "127.0.0.1"


def test_gateway_without_host_listens_on_loopback_only(db_url):
    gateway = GatewayProcess(db_url)
    at = gateway.command.index("--host")
    del gateway.command[at : at + 2]  # start it as a user would: no --host
    try:
        url = gateway.start()
        assert url.startswith("http://127.0.0.1:")
        assert gateway.pid is not None
        listening = [c for c in psutil.Process(gateway.pid).net_connections("inet") if c.status == "LISTEN"]
        assert listening, "the gateway listens on nothing"
        assert {c.laddr.ip for c in listening} == {"127.0.0.1"}
        assert {c.laddr.port for c in listening} == {int(url.rsplit(":", 1)[1])}
    finally:
        gateway.stop()


# --- bearer token ------------------------------------------------------------------------------------
BAD_AUTHORIZATIONS = (
    None,
    "Bearer",
    "Bearer ",
    "Bearer wrong-token",
    f"Bearer {TOKEN}x",
    f"Bearer {TOKEN[:-1]}",
    f"Basic {TOKEN}",
    TOKEN,
    f"Bearer {TOKEN.upper()}",
)


async def _status(http: aiohttp.ClientSession, method: str, url: str, authorization: str | None) -> int:
    headers = {"Authorization": authorization} if authorization is not None else {}
    headers["Content-Type"] = "application/json"
    body = b'{"jsonrpc": "2.0", "id": 1, "method": "initialize"}'
    async with http.request(method, url, headers=headers, data=body) as response:
        if response.status == 401:
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert "bearer token" in assert_error(await response.json(), -32000)
        return response.status


async def test_auth_token_guards_every_mcp_endpoint(start_gateway, http):
    gw = start_gateway("--auth-token", TOKEN)
    session_path = "/message?session_id=" + "ab" * 16
    endpoints = [("GET", "/sse"), ("POST", session_path), ("POST", "/mcp"), ("DELETE", "/mcp"), ("GET", "/mcp")]
    for method, path in endpoints:
        for authorization in BAD_AUTHORIZATIONS:
            assert await _status(http, method, gw.url + path, authorization) == 401, (method, path, authorization)

    # health, metrics and (loopback-only) admin routes stay open
    for path in ("/healthz", "/metrics", "/admin/cycles"):
        async with http.get(gw.url + path) as response:
            assert response.status == 200, path

    # the right token works on both transports
    good = {"Authorization": f"Bearer {TOKEN}"}
    async with open_sse(http, gw.url, headers=good) as session:
        async with http.post(session.message_url, json=rpc("ping", 3)) as response:
            assert response.status == 401  # the message endpoint needs the token too
        async with http.post(session.message_url, json=rpc("ping", 3), headers=good) as response:
            assert response.status == 202
        assert (await session.stream.next_message())["id"] == 3
    async with http.post(f"{gw.url}/mcp", json=rpc("initialize"), headers=good) as response:
        assert response.status == 200
        sid = response.headers["Mcp-Session-Id"]
    async with http.delete(f"{gw.url}/mcp", headers={**good, "Mcp-Session-Id": sid}) as response:
        assert response.status == 200


async def test_auth_header_that_is_not_utf8_is_refused_not_crashed(start_gateway):
    gw = start_gateway("--auth-token", TOKEN)
    host, port = gw.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST /mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\nContent-Length: 2\r\n\r\n{}")
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    assert status_line.split()[1] == b"401"
    assert "Traceback" not in gw.log_path.read_text()


def test_token_comparison_takes_constant_time():
    tree = ast.parse(Path(gateway_app.__file__).read_text())
    auth = next(n for n in ast.walk(tree) if isinstance(n, ast.AsyncFunctionDef) and n.name == "auth_middleware")
    calls = {ast.unparse(n.func) for n in ast.walk(auth) if isinstance(n, ast.Call)}
    assert "hmac.compare_digest" in calls
    compared = [ast.unparse(n) for n in ast.walk(auth) if isinstance(n, ast.Compare)]
    assert not [c for c in compared if "token" in c and "given" in c], compared


# --- session ids -------------------------------------------------------------------------------------
async def test_session_ids_are_128_bit_random(start_gateway, http):
    gw = start_gateway()
    ids: list[str] = []
    for _ in range(200):
        async with http.post(f"{gw.url}/mcp", json=rpc("initialize")) as response:
            ids.append(response.headers["Mcp-Session-Id"])
    for _ in range(10):
        async with open_sse(http, gw.url) as session:
            ids.append(session.session_id)
    assert all(SESSION_ID.fullmatch(i) for i in ids)  # 32 hex digits = 128 bits
    assert len(set(ids)) == len(ids)
    # random, not counted: each of the 128 bit positions is set in about half of the ids,
    # and the leading byte takes many values (a counter or a timestamp would not)
    bits = ["".join(f"{int(c, 16):04b}" for c in i) for i in ids]
    ones = sum(b.count("1") for b in bits) / (128 * len(bits))
    assert 0.45 < ones < 0.55
    for position in range(128):
        assert 0.2 < sum(b[position] == "1" for b in bits) / len(bits) < 0.8, position
    assert len({i[:2] for i in ids}) > 100


# --- admin routes ------------------------------------------------------------------------------------
async def test_no_admin_removes_the_admin_routes(start_gateway, http):
    with_admin = start_gateway()
    without = start_gateway("--no-admin")
    for method, path in ADMIN_ROUTES:
        async with http.request(method, with_admin.url + path, json={}) as response:
            assert response.status == 200, (method, path)
        async with http.request(method, without.url + path, json={}) as response:
            assert response.status == 404, (method, path)
            assert_error(await response.json(), -32000)
    async with http.get(f"{without.url}/healthz") as response:
        assert response.status == 200


def _request_from(peer: Any, path: str = "/admin/cycles", headers: dict[str, str] | None = None) -> web.Request:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: peer if name == "peername" else default
    return make_mocked_request("GET", path, headers=headers, transport=transport)


async def _through_admin_middleware(request: web.Request) -> int:
    async def handler(_: web.Request) -> web.StreamResponse:
        return web.json_response({"reached": True})

    response = await gateway_admin.admin_middleware(request, handler)
    return response.status


@pytest.mark.parametrize(
    ("peer", "allowed"),
    [
        (("127.0.0.1", 5000), True),
        (("127.8.9.10", 5000), True),
        (("::1", 5000, 0, 0), True),
        (("::ffff:127.0.0.1", 5000, 0, 0), True),
        (("10.0.0.7", 5000), False),
        (("192.168.1.20", 5000), False),
        (("203.0.113.9", 5000), False),
        (("2001:db8::1", 5000, 0, 0), False),
        (("::ffff:10.0.0.7", 5000, 0, 0), False),
        (None, False),
        ("/run/gateway.sock", False),
    ],
)
async def test_admin_routes_answer_loopback_clients_only(peer: Any, allowed: bool):
    status = await _through_admin_middleware(_request_from(peer))
    assert status == (200 if allowed else 403)


async def test_admin_check_ignores_forwarded_headers():
    spoofed = {"X-Forwarded-For": "127.0.0.1", "Forwarded": "for=127.0.0.1", "X-Real-IP": "127.0.0.1"}
    assert await _through_admin_middleware(_request_from(("203.0.113.9", 1), headers=spoofed)) == 403


def test_admin_is_a_sub_application_with_its_own_middleware():
    config = GatewayConfig(store=StoreConfig(db_url="postgresql://u@127.0.0.1/db"))
    app = gateway_app.create_app(config)
    assert gateway_admin.admin_middleware not in app.middlewares  # the MCP routes are spared
    admin_apps = [resource for resource in app.router.resources() if resource.canonical == "/admin"]
    assert len(admin_apps) == 1
    no_admin = gateway_app.create_app(GatewayConfig(store=config.store, admin_enabled=False))
    assert not [resource for resource in no_admin.router.resources() if resource.canonical == "/admin"]


# --- SQL -----------------------------------------------------------------------------------------------
SQL_CALLS = {"text", "execute", "exec_driver_sql", "scalar", "scalars"}


def _built_sql(node: ast.expr) -> bool:
    """True for SQL built from values at run time: f-strings, ``.format``, ``%`` or ``+`` with non-literals."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(part, ast.FormattedValue) for part in node.values)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
        return not all(isinstance(side, ast.Constant) for side in (node.left, node.right))
    return False


def unparametrized_sql(source: str, filename: str = "<source>") -> list[str]:
    """Calls of ``text()``/``execute()``… whose SQL is assembled from values instead of bound parameters."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name in SQL_CALLS and _built_sql(node.args[0]):
            found.append(f"{filename}:{node.lineno}: {ast.unparse(node)[:100]}")
    return found


@pytest.mark.parametrize(
    "snippet",
    [
        "session.execute(text(f\"DELETE FROM mcp_sessions WHERE session_id = '{sid}'\"))",
        'conn.exec_driver_sql("SELECT * FROM t WHERE id = {}".format(i))',
        'session.execute(text("SELECT * FROM t WHERE id = %s" % i))',
        'session.execute(text("SELECT * FROM t WHERE id = " + i))',
    ],
)
def test_sql_check_catches_interpolated_statements(snippet: str):
    assert unparametrized_sql(snippet)


def test_gateway_sql_is_parametrized():
    files = sorted(GATEWAY_SIM.glob("*.py"))
    assert len(files) >= 5
    offenders = [hit for path in files for hit in unparametrized_sql(path.read_text(), path.name)]
    assert not offenders, "\n".join(offenders)
    assert not unparametrized_sql('session.execute(text("SELECT 1 WHERE x = :x"), {"x": value})')
