"""The locustfile's pure parts: cycle record → CLEANUP events, pool rows, options, answer checks, log.

None of these modules imports Locust (whose import would monkey-patch this pytest process with gevent);
the shapes, which need Locust, are checked in a subprocess.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.settings import gateway_urls as parse_gateway_urls
from harness.settings import session_lifetime as parse_lifetime
from locustfiles.cycle_events import REQUEST_TYPE, CleanupFailure, cycle_events
from locustfiles.gateway_view import GatewayView, pool_row
from locustfiles.jsonrpc import Call, check_answer, echo, initialize
from locustfiles.options import LoadSettings, add_arguments
from locustfiles.session_log import SessionLog

# A /admin/cycles answer as the gateway serves it (two cycles, the second with refresh errors).
RECORDED_PAYLOAD = json.loads(
    """
{"worker": "w1", "pid": 4242, "cycles_total": 8,
 "cycles": [
  {"worker": "w1", "cycle": 7, "started_at": "2026-11-23T00:10:01.000+00:00", "strategy": "bounded",
   "driver": "async", "max_concurrent": 20, "expiry_ms": 3.5, "phase1_ms": 1.25, "phase2_ms": 40.0,
   "total_ms": 44.75, "sessions_local": 120, "checked": 100, "removed_disconnected": 4, "refreshed": 96,
   "removed_missing": 0, "refresh_errors": 0, "expired": 2, "max_inflight": 20,
   "pool": {"checked_out_peak": 20, "overflow_peak": 0, "waiters_peak": 3, "wait_ms_max": 9.0,
            "wait_ms_p95": 7.5, "acquisitions": 98, "timeouts": 0, "executor_queue_peak": 0},
   "pool_size": 20, "max_overflow": 10, "executor_threads": null, "error": null},
  {"worker": "w1", "cycle": 8, "started_at": "2026-11-23T00:10:02.000+00:00", "strategy": "bounded",
   "driver": "async", "max_concurrent": 20, "expiry_ms": 2.0, "phase1_ms": 1.0, "phase2_ms": 55.5,
   "total_ms": 58.5, "sessions_local": 118, "checked": 98, "removed_disconnected": 0, "refreshed": 95,
   "removed_missing": 1, "refresh_errors": 2, "expired": 0, "max_inflight": 20,
   "pool": {"checked_out_peak": 30, "overflow_peak": 10, "waiters_peak": 12, "wait_ms_max": 80.0,
            "wait_ms_p95": 61.0, "acquisitions": 98, "timeouts": 2, "executor_queue_peak": 0},
   "pool_size": 20, "max_overflow": 10, "executor_threads": null, "error": null}],
 "pool": {"pool_size": 20, "max_overflow": 10, "limit": 30, "checked_out": 4, "overflow": 0, "waiters": 0,
          "executor_queue": 0, "executor_threads": 0, "timeouts_total": 2, "acquisitions_total": 900,
          "connects_total": 30, "invalidations_total": 0, "wait_ms_total": 1500.0,
          "checked_out_seconds": 30.0, "exhausted_seconds": 1.5, "uptime_seconds": 60.0},
 "sessions": {"created": 300, "removed": 182, "removed_by_reason": {"disconnected": 100, "deleted": 82},
              "active": 118, "active_persistent": 98},
 "config": {"strategy": "bounded", "cleanup_interval": 1.0}}
"""
)


def test_cycle_records_become_cleanup_events() -> None:
    events = [e for record in RECORDED_PAYLOAD["cycles"] for e in cycle_events(record)]
    assert [e["name"] for e in events] == ["cycle", "expiry", "phase1", "phase2"] * 2
    assert {e["request_type"] for e in events} == {REQUEST_TYPE}
    first, second = events[:4], events[4:]
    assert [e["response_time"] for e in first] == [44.75, 3.5, 1.25, 40.0]
    assert [e["response_length"] for e in first] == [120, 2, 100, 96]
    assert all(e["exception"] is None for e in first)
    # Refresh errors fail the cycle and phase 2, not expiry or phase 1.
    failed = {e["name"] for e in second if e["exception"] is not None}
    assert failed == {"cycle", "phase2"}
    assert all(isinstance(e["exception"], CleanupFailure) for e in second if e["exception"])
    assert second[3]["response_length"] == 95 + 1 + 2
    assert second[0]["context"] == {"worker": "w1", "cycle": 8}


def test_a_cycle_error_fails_the_cycle_and_expiry() -> None:
    record = {**RECORDED_PAYLOAD["cycles"][0], "error": "expiry sweep failed: OperationalError: gone"}
    failed = {e["name"]: str(e["exception"]) for e in cycle_events(record) if e["exception"]}
    assert failed == {
        "cycle": "expiry sweep failed: OperationalError: gone",
        "expiry": "expiry sweep failed: OperationalError: gone",
    }


def test_pool_row_from_the_latest_pool_block_and_db_activity() -> None:
    view = GatewayView(
        url="http://127.0.0.1:9000",
        worker="w1",
        pool=RECORDED_PAYLOAD["pool"],
        last_cycle=RECORDED_PAYLOAD["cycles"][-1],
        sessions=RECORDED_PAYLOAD["sessions"],
        db={"by_state": {"idle": 25, "active": 5}, "max_connections": 100},
    )
    row = pool_row(view)
    assert row["checked_out"] == "4 / 30"
    assert row["wait_p95_ms"] == 61.0
    assert row["timeouts"] == 2
    assert row["exhausted"] == "2.5%"  # 1.5 s of 60 s
    assert row["pg_by_state"] == "active 5, idle 25"
    assert row["max_connections"] == 100
    assert row["sessions"] == 118
    view.db_error = "timed out"
    assert pool_row(view)["pg_by_state"] == "no answer (timed out)"
    unreachable = pool_row(GatewayView(url="http://127.0.0.1:9001", error="connection refused"))
    assert "unreachable" in unreachable["gateway"]
    assert unreachable["exhausted"] == "0.0%"


@pytest.mark.parametrize(("text", "expected"), [("5-30", (5.0, 30.0)), ("10", (10.0, 10.0)), (" 0.5-2 ", (0.5, 2.0))])
def test_lifetime_parses(text: str, expected: tuple[float, float]) -> None:
    assert parse_lifetime(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "30-5", "0-3", "-1-3", "5-x"])
def test_bad_lifetime_is_a_one_line_error(text: str) -> None:
    with pytest.raises(ValueError, match="--session-lifetime"):
        parse_lifetime(text)


def _options(**values: str) -> SimpleNamespace:
    return SimpleNamespace(**{"session_lifetime": "5-30", "gateway_urls": "", "auth_token": "",
                              "client_session_log": "", **values})


def test_ratios_and_urls_are_checked() -> None:
    assert LoadSettings.from_options(_options(abrupt_ratio="0.3")).abrupt_ratio == 0.3
    for bad in ("1.5", "-0.1", "x"):
        with pytest.raises(ValueError, match="--abrupt-ratio"):
            LoadSettings.from_options(_options(abrupt_ratio=bad))
    assert parse_gateway_urls("http://a:1/, http://b:2") == ("http://a:1", "http://b:2")
    with pytest.raises(ValueError, match="--gateway-urls"):
        parse_gateway_urls("a:1")


def test_settings_fall_back_to_the_host() -> None:
    options = SimpleNamespace(
        session_lifetime="2-4",
        abrupt_ratio="0.3",
        abandon_ratio="0",
        transport_mix="1",
        gateway_urls="",
        auth_token="s3cret",
        client_session_log="",
    )
    settings = LoadSettings.from_options(options, host="http://127.0.0.1:8000/")
    assert settings.gateway_urls == ("http://127.0.0.1:8000",)
    assert (settings.lifetime_min, settings.lifetime_max, settings.abrupt_ratio) == (2.0, 4.0, 0.3)
    assert settings.headers == {"Authorization": "Bearer s3cret"}
    assert settings.session_log is None


def test_answers_are_matched_by_id_and_content() -> None:
    call = echo()
    text = call.params["arguments"]["text"]
    good = {"jsonrpc": "2.0", "id": call.id, "result": {"content": [{"type": "text", "text": text}]}}
    assert check_answer(call, good) is None
    assert check_answer(call, {**good, "id": call.id + 1}) == "answer carries the wrong id"
    other = {**good, "result": {"content": [{"type": "text", "text": "other"}]}}
    assert check_answer(call, other) == "echo returned other text"
    error = {"jsonrpc": "2.0", "id": call.id, "error": {"code": -32602, "message": "Invalid params"}}
    assert check_answer(call, error) == "JSON-RPC error -32602: Invalid params"
    init = initialize()
    assert check_answer(init, {"jsonrpc": "2.0", "id": init.id, "result": {}}) is not None
    ping = Call("ping")
    assert check_answer(ping, {"jsonrpc": "2.0", "id": ping.id, "result": {}}) is None
    assert len({Call("ping").id for _ in range(100)}) == 100


def _append_lines(path: str, worker: int, count: int) -> None:
    log = SessionLog(path)
    for n in range(count):
        log.record(f"{worker:04d}{n:028d}", "sse", "clean")
    log.close()


def test_session_log_lines_stay_whole_across_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "logs" / "sessions.jsonl")
    procs = [multiprocessing.Process(target=_append_lines, args=(path, w, 400)) for w in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    lines = Path(path).read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 1600
    assert len({r["session_id"] for r in records}) == 1600
    assert set(records[0]) == {"session_id", "transport", "how", "closed_at"}


SHAPE_PROBE = """
import json
from locustfiles.shapes import churn_wave, ramp_hold_drain, spike
ticks = {}
for name, fn in (("ramp", ramp_hold_drain), ("spike", spike), ("wave", churn_wave)):
    ticks[name] = [fn(t, 100, 100.0) for t in range(0, 101)]
print(json.dumps(ticks))
"""


def test_shapes_follow_their_plans() -> None:
    out = subprocess.run([sys.executable, "-c", SHAPE_PROBE], capture_output=True, text=True, timeout=60, check=True)
    ticks = json.loads(out.stdout.strip().splitlines()[-1])
    ramp = ticks["ramp"]
    assert ramp[0][0] == 100 and ramp[50][0] == 100 and ramp[85][0] == 0 and ramp[-1] is None
    assert ramp[0][1] == pytest.approx(5.0)  # 100 users over the first 20 s
    spike = ticks["spike"]
    assert spike[0][0] == 20 and spike[45][0] == 100 and spike[65][0] == 20 and spike[-1] is None
    wave = [t[0] for t in ticks["wave"][:-1]]
    assert min(wave) == 50 and max(wave) >= 98
    steps = [b - a for a, b in itertools.pairwise(wave) if b != a]
    falls = sum(1 for a, b in itertools.pairwise(steps) if a > 0 > b)
    assert falls == 3  # three waves: each rise turns into a fall
    assert ticks["wave"][-1] is None


def test_locustfile_options_come_from_the_settings_table() -> None:
    import argparse

    from harness.settings import LOCUSTFILE_KNOBS, SETTINGS

    parser = argparse.ArgumentParser()
    original = parser.add_argument

    def add_argument(*names: str, include_in_web_ui: bool = True, is_secret: bool = False, **kw: object) -> object:
        return original(*names, **kw)

    parser.add_argument = add_argument  # type: ignore[method-assign]  # Locust's parser takes two more keywords
    add_arguments(parser)
    parsed = parser.parse_args([])
    for name in LOCUSTFILE_KNOBS:
        default = SETTINGS[name].default_value()
        assert getattr(parsed, name) == ("" if default is None else str(default)), name
    # the load side and the harness agree on every default (they are one row)
    assert LoadSettings().abrupt_ratio == SETTINGS["abrupt_ratio"].default == 0.2
