"""``--loop uvloop``: the gateway runs on uvloop when asked, and serves the same protocol."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest

pytest.importorskip("uvloop")


def test_gateway_serves_an_sse_session_on_uvloop(start_gateway) -> None:
    gw = start_gateway("--cleanup-interval", "60", "--loop", "uvloop")
    with urllib.request.urlopen(f"{gw.url}/sse", timeout=10) as stream:
        assert stream.readline() == b"event: endpoint\n"
        path = stream.readline().decode().removeprefix("data: ").strip()
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode()
        request = urllib.request.Request(gw.url + path, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as accepted:
            assert accepted.status == 202
        lines = [stream.readline() for _ in range(3)]
        assert lines[0] == b"\n" and lines[1] == b"event: message\n"
        assert json.loads(lines[2].decode().removeprefix("data: ")) == {"jsonrpc": "2.0", "id": 1, "result": {}}
    with urllib.request.urlopen(f"{gw.url}/admin/cycles?limit=0", timeout=10) as resp:
        assert json.load(resp)["config"]["loop"] == "uvloop"


def test_unknown_loop_is_a_usage_error() -> None:
    done = subprocess.run([sys.executable, "-m", "gateway_sim", "--db-url", "postgresql://x/y", "--loop", "trio"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--loop" in done.stderr and "Traceback" not in done.stderr
