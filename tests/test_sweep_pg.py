"""A tiny real sweep end to end on the embedded Postgres: CSV columns, report images, a skip, resume."""

import csv
import json
import re

from harness.cli import main
from tests.golden_keys import csv_columns, golden, json_paths

REQUIRED_COLUMNS = {"strategy", "driver", "sessions", "max_concurrent", "db_latency_ms", "pool_size", "max_overflow",
                    "executor_threads", "measured_ms_p50", "measured_ms_p95", "model_ms", "model_ratio", "c_eff",
                    "binding", "pool_exhausted_fraction", "waiters_peak", "pool_timeouts", "errors"}


def test_tiny_sweep_end_to_end_and_resume(tmp_path, db_url, capsys) -> None:
    out = tmp_path / "sweep"
    argv = ["sweep", "--db-url", db_url, "--sessions", "20", "--db-latency-ms", "5",
            "--strategy", "sequential,bounded,batched", "--driver", "async,thread", "--executor-threads", "2",
            "--max-concurrent", "5", "--repeats", "3", "--max-point-seconds", "0.1", "--out", str(out),
            "--target-cycle-ms", "2000", "--max-db-connections", "100"]
    assert main(argv) == 0
    with (out / "sweep.csv").open() as handle:
        reader = csv.DictReader(handle)
        assert set(reader.fieldnames or []) >= REQUIRED_COLUMNS
        rows = {(r["strategy"], r["driver"]): r for r in reader}
    assert len(rows) == 6
    for driver in ("async", "thread"):  # sequential: model 20 × 6 ms = 120 ms > 0.1 s
        assert rows[("sequential", driver)]["skipped"] == "True"
        assert "max-point-seconds" in rows[("sequential", driver)]["note"]
        assert rows[("sequential", driver)]["measured_ms_p50"] == ""
    bounded = rows[("bounded", "async")]
    assert bounded["binding"] == "semaphore" and bounded["c_eff"] == "5"
    assert float(bounded["measured_ms_p50"]) >= 4 * 5  # ceil(20 / 5) rounds of at least the injected 5 ms
    threaded = rows[("bounded", "thread")]
    assert threaded["binding"] == "executor" and threaded["c_eff"] == "2" and threaded["executor_threads"] == "2"
    assert rows[("batched", "async")]["max_concurrent"] == "" and rows[("batched", "async")]["binding"] == "none"
    # medians of 3 cycles: one statement vs ten rounds on two threads (a single slow cycle no longer decides)
    assert float(rows[("batched", "async")]["measured_ms_p50"]) < float(threaded["measured_ms_p50"])

    page = (out / "report.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert {"cycle_vs_sessions.png", "model_ratio.png", "heatmap_p95.png", "pool_saturation.png"} <= set(images)
    for name in images:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "the executor (2 threads) binds" in page and "Recommendation" in page

    assert csv_columns(out / "sweep.csv") == golden("sweep_csv")  # no column renamed, dropped or added
    assert golden("sweep_json") - json_paths(out / "sweep.json") == set()  # every pinned key is still there
    payload = json.loads((out / "sweep.json").read_text())
    assert len(payload["rows"]) == 6 and payload["recommendations"]
    assert any(r["extrapolated"] for r in payload["recommendations"])  # 10× the largest N by default
    assert "smallest settings" in capsys.readouterr().out

    finished = (out / "points.jsonl").read_bytes()
    assert finished.count(b"\n") == 4  # the measured points, not the skipped ones
    assert main([*argv, "--db-url", "postgresql://nobody@127.0.0.1:1/none"]) == 0  # no server needed to resume
    assert "0 to measure" in capsys.readouterr().out
    assert (out / "points.jsonl").read_bytes() == finished


def test_run_mode_drives_a_point_with_locust(tmp_path, db_url) -> None:
    out = tmp_path / "sweep"
    assert main(["sweep", "--mode", "run", "--db-url", db_url, "--sessions", "5", "--db-latency-ms", "2",
                 "--strategy", "bounded", "--max-concurrent", "4", "--run-time", "6s", "--out", str(out)]) == 0
    [row] = list(csv.DictReader((out / "sweep.csv").open()))
    assert row["mode"] == "run" and row["skipped"] == "False"
    assert float(row["measured_ms_p50"]) > 0 and row["binding"] in ("semaphore", "none")
    assert len(list((out / "runs").glob("*/summary.json"))) == 1
