"""``harness observe`` against real Postgres and the real sim gateway: bad input, read-only, ground truth."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from gateway_sim import store as st
from harness.observe.validate import HeldSessions, Point, run_point
from harness.sut.dbsync import sync_session
from harness.sut.gateway_proc import GatewayProcess
from harness.sut.postgres import free_port

HARNESS = [sys.executable, "-m", "harness"]


def observe_cmd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HARNESS, "observe", *args], capture_output=True, text=True, timeout=60)


def observe_main(capsys: pytest.CaptureFixture[str], *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m harness observe`` in this process (the interpreter start-up is the slow part)."""
    from harness.cli import main

    try:
        code = main(["observe", *args])
    except SystemExit as exc:  # argparse
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(["observe", *args], code, captured.out, captured.err)


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, words: str) -> None:
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert words in lines[0]


def test_unreachable_url_is_one_line_exit_1(tmp_path: Path) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    assert_one_line_error(observe_cmd("--db-url", url, "--duration", "2s", "--out", str(tmp_path)), 1,
                          "cannot connect to the database")
    assert not (tmp_path / "summary.json").exists()


def test_database_without_mcp_sessions_is_one_line_exit_1(db_url: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_error(observe_main(capsys, "--db-url", db_url, "--duration", "2s", "--out", str(tmp_path)), 1,
                          "has no mcp_sessions table")


def test_database_it_cannot_read_is_one_line_exit_1(db_url: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    role = f"r_{secrets.token_hex(4)}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE mcp_sessions (session_id text, created_at timestamptz, last_accessed timestamptz)")
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        url = make_url(db_url).set(username=role, password=None).render_as_string(hide_password=False)
        assert_one_line_error(observe_main(capsys, "--db-url", url, "--duration", "2s", "--out", str(tmp_path)), 1,
                              "cannot read mcp_sessions")
    finally:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


def test_bad_duration_is_usage_exit_2() -> None:
    result = observe_cmd("--db-url", "postgresql://postgres@127.0.0.1:1/postgres", "--duration", "5x")
    assert_one_line_error(result, 2, "--duration")


@pytest.mark.parametrize("duration", ["0", "-3s", "ten"])
def test_other_bad_durations_are_usage_errors(duration: str, capsys: pytest.CaptureFixture[str]) -> None:
    result = observe_main(capsys, "--db-url", "postgresql://postgres@127.0.0.1:1/postgres", "--duration", duration)
    assert_one_line_error(result, 2, "--duration")


CATALOG = {
    "relations": "SELECT c.relname, c.relkind, n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                 " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'",
    "columns": "SELECT attrelid::regclass::text, attname, atttypid FROM pg_attribute a JOIN pg_class c"
               " ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE attnum > 0"
               " AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'",
    "triggers": "SELECT tgname, tgrelid::regclass::text, tgenabled FROM pg_trigger WHERE NOT tgisinternal",
    "functions": "SELECT p.proname, md5(p.prosrc) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                 " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')",
    "extensions": "SELECT extname, extversion FROM pg_extension",
    "schemas": "SELECT nspname FROM pg_namespace",
    "writes": "SELECT n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables WHERE relname = 'mcp_sessions'",
}


def catalog(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Tables, columns, triggers, functions, extensions and schemas of the database, and rows written."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        return {k: sorted(tuple(r) for r in conn.execute(q).fetchall()) for k, q in CATALOG.items()}


def test_observe_leaves_the_schema_as_found_and_ctrl_c_still_writes(db_url: str, tmp_path: Path) -> None:
    with sync_session(db_url) as session:
        st.create_schema(session)
        st.insert_sessions(session, [secrets.token_hex(16) for _ in range(50)])
    time.sleep(1.0)  # let the inserts' statistics settle before the first snapshot
    before = catalog(db_url)
    proc = subprocess.Popen([*HARNESS, "observe", "--db-url", db_url, "--duration", "1m", "--out", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        names: list[str] = []
        deadline = time.monotonic() + 30
        with psycopg.connect(db_url, autocommit=True) as conn:
            while not names and time.monotonic() < deadline:
                time.sleep(0.5)
                names = [r[0] for r in conn.execute(
                    "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()"
                    " AND application_name LIKE 'mcp-loadtest-observe%'").fetchall()]
        assert names == ["mcp-loadtest-observe"]  # one connection, named
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["source"] == "observed"
    assert any("interrupted" in w for w in summary["warnings"])
    assert summary["observed"]["polls"] > 10
    for name in ("cycles.csv", "pool.csv", "report.html"):
        assert (tmp_path / name).exists()
    assert catalog(db_url) == before


def test_observe_cli_measures_the_sim_gateway_and_gate_works(
        db_url: str, start_gateway: Callable[..., GatewayProcess], tmp_path: Path) -> None:
    gateway = start_gateway("--cleanup-interval", "1", "--strategy", "bounded")
    held = HeldSessions(gateway.url, 60)
    assert held.open() == 60
    try:
        result = subprocess.run([*HARNESS, "observe", "--db-url", db_url, "--duration", "7s", "--out", str(tmp_path),
                                 "--application-name", "mcp-gateway-sim"], capture_output=True, text=True, timeout=90)
    finally:
        held.close()
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["source"] == "observed"
    assert summary["cleanup"]["cycles"] >= 3
    assert summary["cleanup"]["refreshed"] >= 3 * 60
    assert summary["cleanup"]["refresh_errors"] is None and summary["pool"]["checked_out_peak"] is None
    assert summary["pool"]["pg_connections_peak"] >= 1
    assert summary["observed"]["poll_hz"] >= 10
    rows = (tmp_path / "cycles.csv").read_text().splitlines()
    assert len(rows) == summary["cleanup"]["cycles"] + 1
    env = dict(os.environ)
    gate = subprocess.run([*HARNESS, "gate", str(tmp_path), "--threshold", "cleanup.cycles > 0",
                           "--threshold", "cleanup.total_ms.p95 < 10s"], capture_output=True, text=True, env=env)
    assert gate.returncode == 0, gate.stdout + gate.stderr


def test_short_ground_truth_point() -> None:
    """N=100 held SSE sessions, 5 ms per refresh, bounded, under Locust churn: the issue's criteria."""
    result, detail = run_point(Point(sessions=100, latency_ms=5, strategy="bounded", cycles=5))
    assert detail["opened"] == 100
    assert result.true_cycles >= 4
    assert result.recall is not None and result.recall >= 0.95, detail
    assert result.precision is not None and result.precision >= 0.95, detail
    # Durations within 10 % or 50 ms: the median cycle, and all but one of the matched ones (the first cycle
    # seen has no previous end to date a missed sweep from; on a starved CI box its estimate may be off).
    true_p50 = sorted(detail["true_ms"])[len(detail["true_ms"]) // 2]
    assert result.error_ms_p50 is not None and result.error_ms_p50 <= max(50.0, 0.1 * true_p50), detail
    assert result.within_tolerance is not None and result.matched * (1 - result.within_tolerance) <= 1.01, detail


def test_run_against_a_gateway_without_admin_api_observes_and_says_so(
        db_url: str, start_gateway: Callable[..., GatewayProcess], tmp_path: Path) -> None:
    gateway = start_gateway("--no-admin", "--cleanup-interval", "1")
    result = subprocess.run([*HARNESS, "run", "--gateway-url", gateway.url, "--db-url", db_url, "--users", "20",
                             "--spawn-rate", "20", "--run-time", "8s", "--session-lifetime", "4-7",
                             "--transport-mix", "1", "--no-progress", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "has no /admin/cycles: measuring cleanup by observing its database" in result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["source"] == "observed"
    assert summary["cleanup"]["cycles"] >= 2
    assert summary["locust"]["requests"] > 0
    assert (tmp_path / "locust_stats.csv").exists() and (tmp_path / "report.html").exists()


def test_locust_shows_observed_cycles_as_cleanup_rows(
        db_url: str, start_gateway: Callable[..., GatewayProcess], tmp_path: Path) -> None:
    gateway = start_gateway("--no-admin", "--cleanup-interval", "1")
    locustfile = Path(__file__).resolve().parents[1] / "locustfiles" / "mcp_sessions.py"
    result = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "-u", "20", "-r", "20", "-t", "9s",
         "--host", gateway.url, "--session-lifetime", "4-7", "--transport-mix", "1", "--observe-db-url", db_url,
         "--csv", str(tmp_path / "locust"), "--only-summary", "--loglevel", "ERROR", "--exit-code-on-error", "0"],
        capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr[-2000:]
    stats = (tmp_path / "locust_stats.csv").read_text()
    rows = [line for line in stats.splitlines() if line.startswith("CLEANUP,cycle (observed)")]
    assert rows, stats
    assert int(rows[0].split(",")[2]) >= 2  # request count: cycles observed while the test ran
