"""``harness baseline save`` and the gate's comparison with a baseline, including the cross-machine note."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from tests.gate_samples import SUMMARY, summary, write_results

Capture = pytest.CaptureFixture[str]
HOST_A = {"hostname": "ci-a", "processor": "x86_64", "cpu_count": 2, "memory_bytes": 8 << 30}
HOST_B = {"hostname": "ci-b", "processor": "x86_64", "cpu_count": 4, "memory_bytes": 16 << 30}


def save(results: Path, output: Path) -> int:
    return main(["baseline", "save", str(results), str(output)])


def gate(results: Path, baseline: Path, *regressions: str) -> int:
    args = ["gate", str(results), "--baseline", str(baseline)]
    for regression in regressions:
        args += ["--max-regression", regression]
    return main(args)


def test_save_writes_manifest_and_summary(tmp_path: Path, capsys: Capture) -> None:
    results = write_results(tmp_path / "run", SUMMARY, machine=HOST_A)
    output = tmp_path / "committed" / "baseline.json"
    assert save(results, output) == 0
    saved = json.loads(output.read_text())
    assert saved == {"manifest": {"command": "python -m harness run", "machine": HOST_A}, "summary": SUMMARY}
    assert "machine: ci-a, x86_64, 2 CPUs" in capsys.readouterr().out


def test_save_without_manifest_keeps_an_empty_one(tmp_path: Path) -> None:
    results = write_results(tmp_path / "run", SUMMARY)
    assert save(results, tmp_path / "baseline.json") == 0
    assert json.loads((tmp_path / "baseline.json").read_text())["manifest"] == {}


def test_save_from_missing_results_exits_2(tmp_path: Path, capsys: Capture) -> None:
    assert save(tmp_path / "absent", tmp_path / "baseline.json") == 2
    assert f"{tmp_path / 'absent'}: no such file" in capsys.readouterr().err
    assert not (tmp_path / "baseline.json").exists()


@pytest.mark.parametrize("args", [["save"], ["save", "only-one"], ["load", "x", "y"], []])
def test_baseline_argument_errors_exit_2(args: list[str], capsys: Capture) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["baseline", *args])
    assert exited.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_comparison_passes_within_the_allowance(tmp_path: Path, capsys: Capture) -> None:
    old = write_results(tmp_path / "old", SUMMARY, machine=HOST_A)
    new = write_results(tmp_path / "new", summary(**{"cleanup.model_ratio.p95": 1.3}), machine=HOST_A)
    assert save(old, tmp_path / "baseline.json") == 0
    assert gate(new, tmp_path / "baseline.json", "cleanup.model_ratio.p95=10%", "locust.rps=-10%") == 0
    out = capsys.readouterr().out
    assert ("✓ regression cleanup.model_ratio.p95=10%: measured 1.3 (+8.333%), "
            "limit ≤ 1.32 (baseline 1.2 +10%)") in out
    assert "✓ regression locust.rps=-10%: measured 80.5 (+0%), limit ≥ 72.45 (baseline 80.5 -10%)" in out
    assert "note:" not in out


def test_comparison_fails_beyond_the_allowance(tmp_path: Path, capsys: Capture) -> None:
    old = write_results(tmp_path / "old", SUMMARY, machine=HOST_A)
    slower = summary(**{"cleanup.model_ratio.p95": 1.5, "locust.rps": 60.0})
    new = write_results(tmp_path / "new", slower, machine=HOST_A)
    assert gate(new, old, "cleanup.model_ratio.p95=10%", "locust.rps=-10%", "cleanup.cycles=-50%") == 99
    out = capsys.readouterr().out
    assert "✗ regression cleanup.model_ratio.p95=10%: measured 1.5 (+25%)" in out
    assert "✗ regression locust.rps=-10%: measured 60 (-25.47%), limit ≥ 72.45" in out
    assert "✓ regression cleanup.cycles=-50%" in out
    md = (new / "gate.md").read_text()
    assert f"baseline: `{old / 'summary.json'}`" in md
    assert "| ✗ | `locust.rps=-10%` (regression) | 60 (-25.47%) | ≥ 72.45 (baseline 80.5 -10%) |" in md


def test_regression_from_zero_allows_no_increase(tmp_path: Path) -> None:
    old = write_results(tmp_path / "old", SUMMARY)
    new = write_results(tmp_path / "new", summary(**{"pool.timeouts": 1}))
    assert gate(new, old, "pool.timeouts=50%") == 99
    assert gate(new, old, "pool.timeouts=1") == 0


def test_cross_machine_note_for_absolute_times(tmp_path: Path, capsys: Capture) -> None:
    old = write_results(tmp_path / "old", SUMMARY, machine=HOST_A)
    new = write_results(tmp_path / "new", SUMMARY, machine=HOST_B)
    assert save(old, tmp_path / "baseline.json") == 0
    capsys.readouterr()
    baseline = tmp_path / "baseline.json"
    assert gate(new, baseline, "cleanup.total_ms.p95=20%", "cleanup.model_ratio.p95=20%") == 0
    out = capsys.readouterr().out
    note = ("note: cleanup.total_ms.p95 is an absolute time compared across machines "
            "(baseline: ci-a, x86_64, 2 CPUs; this run: ci-b, x86_64, 4 CPUs)")
    assert note in out
    assert "cleanup.model_ratio.p95 is" not in out  # a ratio is machine-independent
    assert "absolute time compared across machines" in (new / "gate.md").read_text()
    junit = (new / "junit.xml").read_text()
    assert "note: cleanup.total_ms.p95 is an absolute time" in junit


def test_cross_machine_note_when_a_machine_is_unknown(tmp_path: Path, capsys: Capture) -> None:
    old = write_results(tmp_path / "old", SUMMARY)
    new = write_results(tmp_path / "new", SUMMARY, machine=HOST_A)
    assert gate(new, old, "cleanup.total_ms.p95=20%") == 0
    assert "(baseline: unknown; this run: ci-a, x86_64, 2 CPUs)" in capsys.readouterr().out


def test_no_note_on_the_same_machine(tmp_path: Path, capsys: Capture) -> None:
    old = write_results(tmp_path / "old", SUMMARY, machine=HOST_A)
    new = write_results(tmp_path / "new", summary(**{"cleanup.total_ms.p95": 200.0}), machine=HOST_A)
    assert gate(new, old, "cleanup.total_ms.p95=20%") == 99
    out = capsys.readouterr().out
    assert "✗ regression cleanup.total_ms.p95=20%: measured 200 ms (+150%), limit ≤ 96 ms" in out
    assert "note:" not in out


def test_missing_key_in_the_baseline_names_it(tmp_path: Path, capsys: Capture) -> None:
    old_summary = summary()
    del old_summary["locust"]
    old = write_results(tmp_path / "old", old_summary)
    new = write_results(tmp_path / "new", SUMMARY)
    assert gate(new, old, "locust.rps=-10%") == 2
    err = capsys.readouterr().err
    assert "'locust.rps' not found" in err and str(old / "summary.json") in err


def test_baseline_without_regressions_is_a_usage_error(tmp_path: Path, capsys: Capture) -> None:
    results = write_results(tmp_path / "run", SUMMARY)
    assert main(["gate", str(results), "--baseline", str(results), "--threshold", "pool.timeouts == 0"]) == 2
    assert "no --max-regression" in capsys.readouterr().err
