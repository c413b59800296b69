"""``harness run`` end to end on real parts (embedded Postgres, gateway, Locust), short form."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from harness.cli import main
from tests.golden_keys import csv_columns, golden, json_paths

SHORT_RUN = ["--run-time", "14s", "--users", "24", "--spawn-rate", "12", "--cleanup-interval", "1",
             "--session-lifetime", "2-4", "--session-ttl", "4", "--abrupt-ratio", "0.4", "--abandon-ratio", "0.5",
             "--transport-mix", "0.7", "--db-latency-ms", "5", "--drain", "6", "--no-progress"]


@pytest.fixture(scope="module")
def short_run(tmp_path_factory) -> tuple[int, Path]:
    out = tmp_path_factory.mktemp("run") / "results"
    code = main(["run", *SHORT_RUN, "--out", str(out)])
    return code, out


def test_summary_invariants(short_run) -> None:
    code, out = short_run
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) >= {"config", "versions", "cleanup", "pool", "sessions", "locust"}
    cleanup, pool, sessions, locust = (summary[k] for k in ("cleanup", "pool", "sessions", "locust"))
    assert cleanup["cycles"] >= 5
    assert cleanup["total_ms"]["p95"] >= cleanup["total_ms"]["p50"] > 0
    assert cleanup["model_ratio"]["p50"] is not None
    assert cleanup["calibration"]["under_load_bursts"] >= 1  # the gateway's CPU costs measured under the load too
    assert cleanup["refresh_errors"] == 0
    assert pool["limit"] == 30 and 1 <= pool["checked_out_peak"] <= 30
    assert pool["timeouts"] == 0
    assert 0 <= pool["exhausted_fraction"] <= 1
    assert sessions["leaked"] == 0
    assert sessions["rows_after_shutdown"] == 0
    assert sessions["balanced"] is True
    assert sessions["created"] >= 24
    reasons = sessions["removed_by_reason"]
    assert reasons.get("disconnected", 0) + reasons.get("stream_closed", 0) > 0  # SSE clients that left
    assert reasons.get("deleted", 0) > 0  # Streamable HTTP DELETE
    assert reasons.get("expired", 0) > 0  # abandoned sessions swept by the TTL
    assert sessions["zombie_ms"]["p50"] is not None
    assert locust["requests"] > 100
    assert locust["failure_ratio"] < 0.02


def test_result_keys_are_pinned(short_run) -> None:
    """No key of summary.json, and no column of cycles.csv or pool.csv, is renamed or dropped."""
    _, out = short_run
    run_keys = {k for k in golden("summary") if not k.startswith(("soak", "faults[]"))}  # no fault, no soak here
    assert run_keys - json_paths(out / "summary.json") == set()
    assert golden("cycles_csv") - csv_columns(out / "cycles.csv") == set()
    assert golden("pool_csv") - csv_columns(out / "pool.csv") == set()


def test_result_files(short_run) -> None:
    _, out = short_run
    summary = json.loads((out / "summary.json").read_text())
    with (out / "cycles.csv").open() as fh:
        cycles = list(csv.DictReader(fh))
    assert len(cycles) == summary["cleanup"]["cycles"]
    assert {"total_ms", "model_ms", "model_ratio", "phase1_ms", "phase2_ms", "pool_checked_out_peak"} <= set(cycles[0])
    with (out / "pool.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) >= 10
    report = (out / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["versions"]["sqlalchemy"] and manifest["machine"]["cpu_count"]
    with (out / "locust_stats.csv").open() as fh:
        names = {row["Name"] for row in csv.DictReader(fh)}
    assert any("initialize" in n for n in names)


def test_bad_run_arguments_exit_2(tmp_path, capsys) -> None:
    assert main(["run", "--users", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--users must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["run", "--run-time", "soon"])
    assert exc.value.code == 2
    assert main(["run", "--gate", str(tmp_path / "missing.toml")]) == 2
    assert main(["run", "--malloc-mmap-threshold", "-1", "--out", str(tmp_path / "x")]) == 2
    assert "--malloc-mmap-threshold must be 0" in capsys.readouterr().err
    assert main(["run", "--pool-size", "0", "--out", str(tmp_path / "x")]) == 2  # refused before anything starts
    assert "--pool-size must be >= 1" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_run_against_a_gateway_it_did_not_start(start_gateway, db_url, tmp_path) -> None:
    gw = start_gateway("--cleanup-interval", "1", "--strategy", "batched", "--malloc-mmap-threshold", "0")
    out = tmp_path / "external"
    code = main(["run", "--gateway-url", gw.url, "--db-url", db_url, "--run-time", "6s", "--users", "8",
                 "--spawn-rate", "8", "--session-lifetime", "2-3", "--drain", "2", "--no-progress", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["strategy"] == "batched"  # read from the gateway, not from the defaults
    assert summary["config"]["malloc_mmap_threshold"] == 0
    assert summary["cleanup"]["cycles"] >= 3
    assert summary["sessions"]["leaked"] == 0
    assert summary["sessions"]["rows_after_shutdown"] is None  # not ours to stop
    assert gw.alive()
