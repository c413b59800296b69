"""Fault specs, ``harness fault`` against a running ``harness up``, and a full ``harness run --fault``."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness.cli import main
from harness.faults.spec import FaultSpec, parse_fault
from harness.faults.summary import fault_summary
from tests.golden_keys import golden, json_paths
from tests.test_cleanup_live import _open_sse
from tests.test_faults_gateway import _get, _wait_cycles
from tests.test_run_e2e import SHORT_RUN


@pytest.mark.parametrize("spec, expected", [
    ("kill-backends@5", FaultSpec("kill-backends@5", "kill-backends", 5.0, 0.0)),
    ("restart-db@10", FaultSpec("restart-db@10", "restart-db", 10.0, 3.0)),
    ("restart-db@1m:5s", FaultSpec("restart-db@1m:5s", "restart-db", 60.0, 5.0)),
    ("error-rate=0.3", FaultSpec("error-rate=0.3", "error-rate", 0.0, None, 0.3)),
    ("error-rate=1@2:4", FaultSpec("error-rate=1@2:4", "error-rate", 2.0, 4.0, 1.0)),
    ("statement-timeout=50@0:3", FaultSpec("statement-timeout=50@0:3", "statement-timeout", 0.0, 3.0, 50.0)),
    ("pool-exhaust@3:2.5", FaultSpec("pool-exhaust@3:2.5", "pool-exhaust", 3.0, 2.5)),
])
def test_parse_good_specs(spec: str, expected: FaultSpec) -> None:
    assert parse_fault(spec) == expected


@pytest.mark.parametrize("spec, problem", [
    ("nap@3", "unknown fault 'nap'"),
    ("kill-backends", "needs a time"),
    ("kill-backends=1@3", "takes no value"),
    ("kill-backends@soon", "not a time"),
    ("kill-backends@-1", "must be >= 0"),
    ("restart-db@3:0", "must be > 0"),
    ("error-rate@3:1", "needs a value"),
    ("error-rate=1.5", "between 0 and 1"),
    ("error-rate=x", "not a number"),
    ("statement-timeout=0", "must be > 0"),
    ("pool-exhaust@3", "needs a window"),
    ("error-rate=0.5@3", "needs a window"),
])
def test_bad_specs_name_the_spec(spec: str, problem: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_fault(spec)
    assert f"bad fault spec {spec!r}" in str(exc.value) and problem in str(exc.value)


def test_bad_specs_exit_2_in_one_line(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", "--fault", "kill-backends@x", "--out", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "kill-backends@x" in err
    assert main(["run", "--run-time", "10s", "--fault", "pool-exhaust@8:5", "--out", str(tmp_path)]) == 2
    assert "after the load" in capsys.readouterr().err
    assert main(["run", "--db-url", "postgresql://u@127.0.0.1:1/x", "--fault", "restart-db@1",
                 "--out", str(tmp_path)]) == 2
    assert "needs a Postgres the harness starts" in capsys.readouterr().err
    assert main(["fault", "kill-backends@0", "--state", str(tmp_path / "none.json")]) == 2
    assert "no running 'harness up'" in capsys.readouterr().err


def test_kill_window_reaches_the_first_cycle_after_it() -> None:
    cycles = [{"worker": "0", "cycle": n, "started_at": f"2026-01-01T00:00:{n:02d}+00:00", "total_ms": 100.0,
               "refresh_errors": 2 if n == 11 else 0, "removed_missing": 0, "error": None} for n in range(8, 15)]
    started_at = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    events = [{"t": 10.5, "kind": "fault", "fault": "kill-backends@1", "phase": "start", "terminated": 3}]
    entry = fault_summary([parse_fault("kill-backends@1")], events, cycles, started_at)[0].to_json()
    assert entry["cycles_during"] == 1 and entry["refresh_errors_during"] == 2  # cycle 11 met the dead connections
    assert entry["recovery_cycles"] == [{"worker": "0", "cycle": 12, "refresh_errors": 0, "error": None}]
    assert entry["recovered"] and entry["detail"] == {"terminated": 3}


def test_recovery_cycle_skips_cycles_inside_another_faults_window() -> None:
    cycles = [{"worker": "0", "cycle": n, "started_at": f"2026-01-01T00:00:{n:02d}+00:00", "total_ms": 100.0,
               "refresh_errors": 5 if n in (11, 12) else 0, "removed_missing": 0, "error": None}
              for n in range(8, 16)]
    started_at = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    specs = [parse_fault("kill-backends@1"), parse_fault("error-rate=0.5@2:1")]
    events = [{"t": 10.5, "kind": "fault", "fault": "kill-backends@1", "phase": "start"},
              {"t": 11.9, "kind": "fault", "fault": "error-rate=0.5@2:1", "phase": "start"},
              {"t": 12.5, "kind": "fault", "fault": "error-rate=0.5@2:1", "phase": "end"}]
    kill, errors = (f.to_json() for f in fault_summary(specs, events, cycles, started_at))
    # cycle 12 lies in the error-rate window: the kill's recovery is judged on cycle 13
    assert kill["recovery_cycles"] == [{"worker": "0", "cycle": 13, "refresh_errors": 0, "error": None}]
    assert kill["recovered"]
    assert errors["refresh_errors_during"] == 5 and errors["recovered"]


def _start_up(state: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "harness", "up", "--port", "0", "--state", str(state),
                             "--cleanup-interval", "0.5", "--sse-keepalive", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        assert line, "harness up ended: " + " | ".join(lines)
        lines.append(line.strip())
        if line.startswith("running"):
            break
    return proc, next(x.split(" ", 1)[1] for x in lines if x.startswith("gateway: "))


def test_fault_command_against_up(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    proc, gateway = _start_up(state)
    try:
        socks = [_open_sse(gateway)[0] for _ in range(3)]
        _wait_cycles(gateway, 2)
        out = subprocess.run([sys.executable, "-m", "harness", "fault", "restart-db@0.2:1.5", "kill-backends@2.5",
                              "--state", str(state)], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert any("restart-db@0.2:1.5 start" in x for x in lines) and any("restart-db@0.2:1.5 end" in x
                                                                           for x in lines)
        assert any("kill-backends@2.5 start terminated=" in x for x in lines)
        _wait_cycles(gateway, 3)
        payload = _get(f"{gateway}/admin/cycles")
        assert payload["sessions"]["active"] == 3 and payload["sessions"]["removed"] == 0
        assert any(c["refresh_errors"] or c["error"] for c in payload["cycles"])  # the faults were felt
        assert payload["cycles"][-1]["refresh_errors"] == 0 and payload["cycles"][-1]["refreshed"] == 3
        for value in ("0.25", "0"):
            out = subprocess.run([sys.executable, "-m", "harness", "fault", f"error-rate={value}", "--state",
                                  str(state)], capture_output=True, text=True, timeout=60)
            assert out.returncode == 0 and "left in force" in out.stdout
            assert _get(f"{gateway}/admin/latency")["error_rate"] == float(value)
        for sock in socks:
            sock.close()
    finally:
        proc.terminate()
        assert proc.wait(60) == 0
    assert not state.exists()


def test_run_with_every_fault(tmp_path: Path) -> None:
    out = tmp_path / "results"
    faults = ["kill-backends@3", "error-rate=0.5@5:2", "statement-timeout=2@9:2", "restart-db@13:2",
              "pool-exhaust@17:1.5"]
    args = [*SHORT_RUN, "--run-time", "21s", "--out", str(out)]
    for spec in faults:
        args += ["--fault", spec]
    assert main(["run", *args]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert {k for k in golden("summary") if k.startswith("faults")} - json_paths(out / "summary.json") == set()
    entries = {e["spec"]: e for e in summary["faults"]}
    assert list(entries) == faults
    for spec, entry in entries.items():
        assert entry["applied"] and entry["error"] is None, spec
        assert entry["removed_missing_during"] == 0, spec  # no connected session removed by cleanup
        assert entry["recovered"], (spec, entry["recovery_cycles"])
    assert entries["restart-db@13:2"]["refresh_errors_during"] + entries["restart-db@13:2"]["cycle_errors_during"]
    assert entries["error-rate=0.5@5:2"]["refresh_errors_during"] > 0
    sessions = summary["sessions"]
    assert sessions["balanced"] and sessions["leaked"] == 0
    assert not any("exited" in w for w in summary["warnings"])  # the gateway never exited
    events = json.loads((out / "events.json").read_text())
    assert {e["fault"] for e in events if e["kind"] == "fault"} == set(faults)
    assert "<h2>Faults</h2>" in (out / "report.html").read_text()
    with (out / "pool.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert rows and all(int(r["sessions_created"]) == int(r["sessions_removed"]) + int(r["sessions_active"])
                        for r in rows)
