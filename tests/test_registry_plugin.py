"""``--registry package.module:factory``: a tiny registry written here, hosted by a real gateway process.

The registry below keeps sessions in memory only (no rows) and runs a one-phase cleanup: it drops the sessions
whose transport says it is gone. Everything else (the app, /admin/cycles, /metrics) is the gateway's own.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway_sim.config import GatewayConfig, StoreConfig
from gateway_sim.metrics import CycleLog, CycleRecord
from gateway_sim.registry_api import Registry, SessionListener
from gateway_sim.store import open_store
from gateway_sim.transports import Transport
from harness.sut.gateway_proc import GatewayError, GatewayProcess

ROOT = Path(__file__).resolve().parents[1]


class TinyRegistry:
    """Sessions in a dict; a cycle checks each transport and forgets the gone ones."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.store = open_store(config.store)
        self.monitor = self.store.monitor
        self.cycle_log = CycleLog(history=config.cycle_history)
        self.listeners: list[SessionListener] = []
        self._sessions: dict[str, Transport] = {}
        self.created: Counter[str] = Counter()
        self.removed: Counter[str] = Counter()
        self._cycles = 0

    @property
    def sessions(self) -> Mapping[str, Transport]:
        return self._sessions

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        for session_id in list(self._sessions):
            await self.remove_session(session_id, "shutdown")

    async def stop(self) -> None:
        await self.store.close()

    def get(self, session_id: str) -> Transport | None:
        return self._sessions.get(session_id)

    async def add_session(self, transport: Transport, data: str | None = None) -> str:
        session_id = f"{len(self.created) + sum(self.created.values()):032x}"
        self._sessions[session_id] = transport
        self.created[transport.kind] += 1
        for listener in self.listeners:
            listener("created", session_id, transport.kind, "")
        return session_id

    async def add_sessions(self, transports: Sequence[Transport]) -> list[str]:
        return [await self.add_session(t) for t in transports]

    async def remove_session(self, session_id: str, reason: str, *, delete_row: bool = True) -> bool:
        transport = self._sessions.pop(session_id, None)
        if transport is None:
            return False
        self.removed[reason] += 1
        await transport.disconnect()
        for listener in self.listeners:
            listener("removed", session_id, transport.kind, reason)
        return True

    async def touch(self, session_id: str) -> bool:
        return session_id in self._sessions

    async def refresh_one(self, session_id: str) -> bool:
        return session_id in self._sessions

    async def run_cleanup_cycle(self) -> CycleRecord:
        self._cycles += 1
        started = time.perf_counter()
        local = len(self._sessions)
        gone = [sid for sid, t in list(self._sessions.items()) if not await t.is_connected()]
        for session_id in gone:
            await self.remove_session(session_id, "disconnected")
        ms = round((time.perf_counter() - started) * 1000.0, 3)
        record = CycleRecord(
            worker=self.config.worker_id, cycle=self._cycles, started_at=datetime.now(UTC).isoformat(),
            strategy="tiny", driver="none", max_concurrent=1, expiry_ms=0.0, phase1_ms=ms, phase2_ms=0.0, total_ms=ms,
            sessions_local=local, checked=local, removed_disconnected=len(gone), refreshed=0, removed_missing=0,
            refresh_errors=0, expired=0, max_inflight=0, pool=self.monitor.take_window(),
            pool_size=self.monitor.pool_size, max_overflow=self.monitor.max_overflow, executor_threads=None,
        )
        self.cycle_log.add(record)
        return record

    async def run_forever(self) -> None:
        import asyncio

        while True:
            await asyncio.sleep(self.config.registry.cleanup_interval)
            await self.run_cleanup_cycle()

    def accounting(self) -> dict[str, Any]:
        return {"created": sum(self.created.values()), "created_by_transport": dict(self.created),
                "removed": sum(self.removed.values()), "removed_by_reason": dict(self.removed),
                "active": len(self._sessions), "active_persistent": len(self._sessions)}

    def describe(self) -> dict[str, Any]:
        return {"registry": "tiny", "strategy": "tiny", "driver": "none", "executor_threads": None}

    async def hold_connections(self, count: int, seconds: float) -> int:
        return 0


def create(config: GatewayConfig) -> TinyRegistry:
    """The factory ``--registry tests.test_registry_plugin:create`` names."""
    return TinyRegistry(config)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)


def test_a_registry_of_your_own_is_hosted_by_the_gateway(db_url, monkeypatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    gw = GatewayProcess(db_url, ["--registry", "tests.test_registry_plugin:create", "--cleanup-interval", "0.3"])
    gw.start()
    try:
        host, port = gw.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(f"GET /sse HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode())
            received = b""
            while b"event: endpoint" not in received:  # headers and the first event may come apart
                chunk = sock.recv(4096)
                assert chunk, f"stream ended before its endpoint event: {received!r}"
                received += chunk
            assert _get(f"{gw.url}/admin/sessions")["accounting"]["active"] == 1
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the client is gone: the tiny registry's cycle drops it
            cycles = _get(f"{gw.url}/admin/cycles")
            if cycles["sessions"]["removed"] == 1:
                break
            time.sleep(0.2)
        assert cycles["config"]["registry"] == "tiny"
        assert cycles["sessions"]["removed"] == 1 and cycles["sessions"]["active"] == 0
        assert sum(c["removed_disconnected"] for c in cycles["cycles"]) + cycles["sessions"]["removed_by_reason"].get(
            "stream_closed", 0) == 1
        with urllib.request.urlopen(f"{gw.url}/metrics", timeout=10) as resp:
            metrics = resp.read().decode()
        assert 'mcp_sessions_created_total{transport="sse"} 1.0' in metrics
        assert "mcp_cleanup_cycles_total" in metrics
    finally:
        gw.stop()


async def test_the_tiny_registry_and_the_sim_satisfy_the_interface(db_url) -> None:
    from gateway_sim.registry import create as create_sim

    config = GatewayConfig(store=StoreConfig(db_url=db_url))
    for registry in (create(config), create_sim(config)):
        assert isinstance(registry, Registry)
        await registry.stop()


@pytest.mark.parametrize("name", ["tests.test_registry_plugin:nothing_here", "no_such_module_x:create"])
def test_a_registry_that_cannot_be_loaded_stops_the_gateway_with_one_line(db_url, monkeypatch, name) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    gw = GatewayProcess(db_url, ["--registry", name])
    with pytest.raises(GatewayError) as exc:
        gw.start(timeout=30)
    assert name.split(":")[0] in str(exc.value)
