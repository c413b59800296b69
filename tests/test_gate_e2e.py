"""The gate on real runs: a passing and an impossible threshold, and a real regression caught by a baseline."""

from __future__ import annotations

import json

import pytest

from harness.cli import main

# Short runs whose cycles refresh ~30 connected sessions at 20 ms each: bounded c=20 needs two rounds,
# sequential thirty; the regression allowance below is wide enough for CI noise, not for 10× slower.
SCENARIO = ["--run-time", "10s", "--users", "30", "--spawn-rate", "30", "--session-lifetime", "20-30",
            "--transport-mix", "1", "--cleanup-interval", "1", "--db-latency-ms", "20", "--drain", "2",
            "--no-progress"]
ALLOWANCE = "cleanup.phase2_ms.p50=300%"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate")
    dirs = {}
    for name, strategy in (("base", "bounded"), ("same", "bounded"), ("slow", "sequential")):
        dirs[name] = root / name
        assert main(["run", *SCENARIO, "--strategy", strategy, "--out", str(dirs[name])]) == 0
    return root, dirs


def test_threshold_that_passes_and_one_that_cannot(runs) -> None:
    _, dirs = runs
    assert main(["gate", str(dirs["base"]), "--threshold", "sessions.leaked == 0",
                 "--threshold", "cleanup.cycles >= 3", "--threshold", "pool.timeouts == 0"]) == 0
    assert (dirs["base"] / "gate.md").exists() and (dirs["base"] / "junit.xml").exists()
    assert main(["gate", str(dirs["base"]), "--threshold", "cleanup.total_ms.p95 < 0.001"]) == 99
    assert "<failure" in (dirs["base"] / "junit.xml").read_text()


def test_missing_key_is_a_usage_error(runs, capsys) -> None:
    _, dirs = runs
    assert main(["gate", str(dirs["base"]), "--threshold", "cleanup.nothing.p95 < 1"]) == 2
    assert "cleanup.nothing" in capsys.readouterr().err


def test_regression_gate_catches_sequential_against_a_bounded_baseline(runs) -> None:
    root, dirs = runs
    baseline = root / "baseline.json"
    assert main(["baseline", "save", str(dirs["base"]), str(baseline)]) == 0
    slow = json.loads((dirs["slow"] / "summary.json").read_text())["cleanup"]["phase2_ms"]["p50"]
    base = json.loads((dirs["base"] / "summary.json").read_text())["cleanup"]["phase2_ms"]["p50"]
    assert slow > 4 * base  # the scenario really is slower, measured in this run
    assert main(["gate", str(dirs["slow"]), "--baseline", str(baseline), "--max-regression", ALLOWANCE]) == 99
    assert main(["gate", str(dirs["same"]), "--baseline", str(baseline), "--max-regression", ALLOWANCE]) == 0


def test_run_with_gate_file_gates_in_one_command(tmp_path) -> None:
    gate = tmp_path / "gate.toml"
    gate.write_text('thresholds = ["sessions.leaked == 0", "cleanup.total_ms.p95 < 0.001"]\n')
    code = main(["run", "--run-time", "4s", "--users", "6", "--spawn-rate", "6", "--cleanup-interval", "1",
                 "--drain", "1", "--no-progress", "--out", str(tmp_path / "r"), "--gate", str(gate)])
    assert code == 99
    assert (tmp_path / "r" / "gate.md").exists()
