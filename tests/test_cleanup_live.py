"""Cleanup against live clients: an abrupt drop goes in phase 1, an abandoned session in the TTL sweep."""

from __future__ import annotations

import json
import socket
import struct
import time
import urllib.request
from urllib.parse import urlsplit


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)


def _post(url: str, body: dict, headers: dict | None = None) -> tuple[dict, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.load(resp), dict(resp.headers)


def _open_sse(base: str) -> tuple[socket.socket, str]:
    parts = urlsplit(base)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    sock.sendall(f"GET /sse HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: text/event-stream\r\n\r\n".encode())
    data = b""
    while b"session_id=" not in data or b"\n" not in data.split(b"session_id=")[1]:
        data += sock.recv(4096)
    session_id = data.split(b"session_id=")[1].split(b"\n")[0].strip().decode()
    return sock, session_id


def test_abrupt_drop_is_removed_by_phase1_within_one_cycle(start_gateway) -> None:
    gw = start_gateway("--cleanup-interval", "1", "--sse-keepalive", "60")
    sock, session_id = _open_sse(gw.url)
    assert len(session_id) == 32
    assert _get(f"{gw.url}/admin/cycles")["sessions"]["active"] == 1
    # Drop the socket mid-stream with a reset (SO_LINGER 0): no goodbye, no further reads.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    dropped = time.monotonic()
    start_cycle = _get(f"{gw.url}/admin/cycles")["cycles_total"]
    while time.monotonic() - dropped < 20:
        payload = _get(f"{gw.url}/admin/cycles?since={start_cycle}")
        if payload["sessions"]["active"] == 0:
            break
        time.sleep(0.1)
    payload = _get(f"{gw.url}/admin/cycles")
    assert payload["sessions"]["removed_by_reason"] == {"disconnected": 1}
    removing = [c for c in payload["cycles"] if c["removed_disconnected"]]
    assert len(removing) == 1
    assert removing[0]["cycle"] <= start_cycle + 2  # the first full cycle after the drop (one may be under way)


def test_abandoned_streamable_http_session_is_removed_by_ttl_sweep(start_gateway) -> None:
    gw = start_gateway("--cleanup-interval", "0.5", "--session-ttl", "1.5")
    _, headers = _post(f"{gw.url}/mcp", {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}})
    session_id = headers["Mcp-Session-Id"]
    kept_alive = _post(f"{gw.url}/mcp", {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}})[1][
        "Mcp-Session-Id"]
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:  # one client keeps calling, the other has left without DELETE
        _post(f"{gw.url}/mcp", {"jsonrpc": "2.0", "id": 2, "method": "ping"}, {"Mcp-Session-Id": kept_alive})
        time.sleep(0.3)
    sessions = _get(f"{gw.url}/admin/sessions")
    assert sessions["sessions"].get("streamable_http") == [kept_alive]
    assert session_id not in json.dumps(sessions)
    assert sessions["accounting"]["removed_by_reason"] == {"expired": 1}
