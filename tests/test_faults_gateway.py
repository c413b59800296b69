"""Faults applied directly to a real gateway holding open SSE sessions on the embedded Postgres.

Each fault must keep every connected session (errors counted, nothing removed), the pool must drop broken
connections, the gateway must keep serving, and the first cycle after the fault must be clean.
"""

from __future__ import annotations

import json
import socket
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from harness.faults import injectors as faults
from harness.faults.spec import parse_fault
from harness.faults.summary import fault_summary
from harness.sut.dbsync import sync_session
from tests.test_cleanup_live import _open_sse

SESSIONS = 5
INTERVAL = 0.4


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)


class Timeline:
    """Marks fault events the way the run's collector does (seconds since start)."""

    def __init__(self, on_start: Callable[[], None] | None = None) -> None:
        self.started_at = time.time()
        self.events: list[dict[str, Any]] = []
        self.on_start = on_start

    def mark(self, kind: str, **detail: Any) -> None:
        self.events.append({"t": round(time.time() - self.started_at, 3), "kind": kind, **detail})
        if detail.get("phase") == "start" and self.on_start is not None:
            self.on_start()


def _wait_cycles(url: str, count: int, timeout: float = 15.0) -> None:
    target = _get(f"{url}/admin/cycles?limit=0")["cycles_total"] + count
    deadline = time.monotonic() + timeout
    while _get(f"{url}/admin/cycles?limit=0")["cycles_total"] < target:
        assert time.monotonic() < deadline, "no cleanup cycles"
        time.sleep(0.05)


def _rows(db_url: str) -> set[str]:
    from gateway_sim.store import all_session_ids

    with sync_session(db_url) as session:
        return all_session_ids(session)


def _run_fault(gw_url: str, spec: str, target: faults.FaultTarget,
               on_start: Callable[[], None] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Hold SESSIONS SSE clients, run ``spec`` at t=0.5 s, wait for two cycles after it; (summary, payload)."""
    socks = [_open_sse(gw_url)[0] for _ in range(SESSIONS)]
    try:
        _wait_cycles(gw_url, 2)
        timeline = Timeline(on_start)
        scheduler = faults.FaultScheduler([parse_fault(spec)])
        scheduler.begin(target, timeline.mark)
        spec_ = scheduler.specs[0]
        if spec_.end is None:
            time.sleep(spec_.at + 1.5)
            scheduler.stop()
        scheduler.wait()
        assert not scheduler.failures
        _wait_cycles(gw_url, 3)
        payload = _get(f"{gw_url}/admin/cycles")
        summary = fault_summary(scheduler.specs, timeline.events, payload["cycles"], timeline.started_at)
        return summary[0].to_json(), payload
    finally:
        for sock in socks:
            sock.close()


def _assert_kept_and_recovered(entry: dict[str, Any], payload: dict[str, Any], db_url: str) -> None:
    assert entry["applied"] and entry["cycles_during"] >= 1
    assert entry["removed_missing_during"] == 0
    assert payload["sessions"]["removed"] == 0  # every connected session kept through the fault
    assert payload["sessions"]["active"] == SESSIONS == payload["sessions"]["created"]
    assert entry["recovered"], entry["recovery_cycles"]
    recovery = next(c for c in payload["cycles"] if c["cycle"] == entry["recovery_cycles"][0]["cycle"])
    assert recovery["refreshed"] == SESSIONS
    assert len(_rows(db_url)) == SESSIONS


@pytest.mark.parametrize("spec, gateway_args", [
    ("error-rate=1@0.5:1.2", ()),
    ("statement-timeout=10@0.5:1.2", ("--db-latency-ms", "30")),
    ("kill-backends@0.5", ()),
    ("pool-exhaust@0.5:1.5", ("--pool-timeout", "0.3")),
])
def test_fault_keeps_sessions_and_recovers_in_one_cycle(start_gateway, db_url, spec, gateway_args) -> None:
    gw = start_gateway("--cleanup-interval", str(INTERVAL), "--sse-keepalive", "60", *gateway_args)
    entry, payload = _run_fault(gw.url, spec, faults.FaultTarget(db_url, [gw.url]))
    assert entry["refresh_errors_during"] + entry["cycle_errors_during"] > 0  # the fault was felt and counted
    _assert_kept_and_recovered(entry, payload, db_url)
    if spec.startswith("kill"):
        assert entry["detail"]["terminated"] >= 1
        assert payload["pool"]["invalidations_total"] >= 1  # the pool dropped the dead connections
    if spec.startswith("pool-exhaust"):
        assert payload["pool"]["timeouts_total"] >= 1
    assert gw.alive() and _get(f"{gw.url}/healthz")["status"] == "ok"


def test_kill_with_pre_ping_costs_no_error(start_gateway, db_url) -> None:
    gw = start_gateway("--cleanup-interval", str(INTERVAL), "--sse-keepalive", "60", "--pool-pre-ping")
    entry, payload = _run_fault(gw.url, "kill-backends@0.5", faults.FaultTarget(db_url, [gw.url]))
    assert entry["detail"]["terminated"] >= 1
    assert entry["refresh_errors_during"] == 0 and entry["cycle_errors_during"] == 0
    _assert_kept_and_recovered(entry, payload, db_url)


def test_error_rate_for_the_whole_load(start_gateway, db_url) -> None:
    gw = start_gateway("--cleanup-interval", str(INTERVAL), "--sse-keepalive", "60")
    entry, payload = _run_fault(gw.url, "error-rate=0.5", faults.FaultTarget(db_url, [gw.url]))
    assert entry["start_t"] is not None and entry["end_t"] > entry["start_t"]
    _assert_kept_and_recovered(entry, payload, db_url)
    with sync_session(db_url) as session:
        from gateway_sim.store import get_fault_knobs

        assert get_fault_knobs(session)["error_rate"] == 0  # cleared when the load ended


def test_restart_db_keeps_sessions_and_deletes_rows_of_clients_that_left_meanwhile(
        start_gateway, db_url, pg_server) -> None:
    gw = start_gateway("--cleanup-interval", str(INTERVAL), "--sse-keepalive", "60")
    leaver, leaver_id = _open_sse(gw.url)
    target = faults.FaultTarget(db_url, [gw.url], restart=faults.local_restart(pg_server))

    def drop_leaver() -> None:  # an abrupt drop while Postgres is down: its row delete fails
        leaver.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        leaver.close()

    entry, payload = _run_fault(gw.url, "restart-db@0.5:2", target, on_start=drop_leaver)
    assert entry["end_t"] - entry["start_t"] >= 1.5
    assert entry["refresh_errors_during"] > 0 and entry["cycle_errors_during"] > 0
    assert entry["removed_missing_during"] == 0 and entry["recovered"]
    assert payload["sessions"]["removed_by_reason"] == {"disconnected": 1}  # only the client that left
    assert payload["sessions"]["active"] == SESSIONS
    rows = _rows(db_url)
    assert leaver_id not in rows and len(rows) == SESSIONS  # the failed delete was retried: no leak
    assert gw.alive()


def _post(url: str, body: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_admin_process_and_hold_connections_input(start_gateway) -> None:
    gw = start_gateway("--pool-size", "2", "--max-overflow", "1")
    process = _get(f"{gw.url}/admin/process")
    assert process["pid"] == gw.pid and process["rss_bytes"] > 0 and process["open_fds"] > 0
    assert process["asyncio_tasks"] >= 1 and process["sessions_active"] == 0
    for body in (b"[", b"[]", b'{"seconds": 0}', b'{"seconds": -1}', b'{"seconds": "5"}', b'{"seconds": 1e999}',
                 b'{"seconds": 1, "connections": 4}', b'{"seconds": 1, "connections": true}',
                 b'{"seconds": 1, "extra": 1}', b'{"seconds": 99999}'):
        status, answer = _post(f"{gw.url}/admin/hold-connections", body)
        assert status == 400 and answer["error"]["message"], body
    status, answer = _post(f"{gw.url}/admin/hold-connections", b'{"seconds": 1}')
    assert status == 202 and answer == {"holding": 3, "seconds": 1.0}
    time.sleep(0.4)
    assert _get(f"{gw.url}/admin/cycles")["pool"]["checked_out"] == 3  # the whole pool is held
    time.sleep(1.2)
    assert _get(f"{gw.url}/admin/cycles")["pool"]["checked_out"] == 0  # and released
