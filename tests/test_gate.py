"""``harness gate`` through ``harness.cli.main``: exit codes, messages, TOML and pyproject checks, reports."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.cli import main
from harness.gate.evaluate import run_gate
from tests.gate_samples import BENCH, SUMMARY, summary, write_results

Capture = pytest.CaptureFixture[str]


def gate(*args: str | Path) -> int:
    return main(["gate", *map(str, args)])


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return write_results(tmp_path / "run", SUMMARY)


def test_all_thresholds_pass(results: Path, capsys: Capture) -> None:
    code = gate(results, "--threshold", "cleanup.total_ms.p95 < 500", "--threshold", "pool.timeouts == 0",
                "--threshold", "sessions.leaked == 0", "--threshold", "locust.failure_ratio < 1%")
    out = capsys.readouterr().out
    assert code == 0
    assert "✓ cleanup.total_ms.p95 < 500: measured 80 ms, limit < 500 ms" in out
    assert "✓ locust.failure_ratio < 1%: measured 0.04%, limit < 1%" in out
    assert "✗" not in out
    assert "gate passed: all 4 checks passed" in out


def test_a_failed_threshold_exits_99(results: Path, capsys: Capture) -> None:
    code = gate(results, "--threshold", "cleanup.total_ms.p95 < 0.001", "--threshold", "pool.timeouts == 0")
    out = capsys.readouterr().out
    assert code == 99
    assert "✗ cleanup.total_ms.p95 < 0.001: measured 80 ms, limit < 0.001 ms" in out
    assert "✓ pool.timeouts == 0" in out
    assert "gate failed: 1 of 2 checks failed" in out


def test_a_null_value_fails_the_check(results: Path, capsys: Capture) -> None:
    assert gate(results, "--threshold", "sessions.zombie_ms.p95 < 5s") == 99
    assert "✗ sessions.zombie_ms.p95 < 5s: measured null (no value)" in capsys.readouterr().out


def test_missing_key_exits_2_naming_key_and_file(results: Path, capsys: Capture) -> None:
    code = gate(results, "--threshold", "pool.timeouts == 0", "--threshold", "cleanup.totl_ms.p95 < 500")
    err = capsys.readouterr().err
    assert code == 2
    assert "'cleanup.totl_ms.p95' not found" in err and str(results / "summary.json") in err
    assert not (results / "gate.md").exists()


def test_bad_expression_exits_2_naming_it(results: Path, capsys: Capture) -> None:
    assert gate(results, "--threshold", "cleanup.total_ms.p95 =< 500") == 2
    assert "bad expression 'cleanup.total_ms.p95 =< 500'" in capsys.readouterr().err


def _bad_results(directory: Path, kind: str) -> Path:
    directory.mkdir()
    if kind == "absent":
        return directory / "absent"
    if kind == "no summary":
        return directory
    path = directory / "results.json"
    path.write_text("{not json" if kind == "invalid" else "[1, 2]")
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("absent", "no such file"),
        ("no summary", "has no summary.json"),
        ("invalid", "is not valid JSON"),
        ("not an object", "expected a JSON object"),
    ],
)
def test_unreadable_results_exit_2(tmp_path: Path, kind: str, message: str,
                                   capsys: Capture) -> None:
    path = _bad_results(tmp_path / "x", kind)
    assert gate(path, "--threshold", "pool.timeouts == 0") == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err


def test_no_checks_at_all_exits_2(results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: Capture) -> None:
    monkeypatch.chdir(tmp_path)
    assert gate(results) == 2
    assert "no checks" in capsys.readouterr().err


def test_max_regression_needs_a_baseline(results: Path, capsys: Capture) -> None:
    assert gate(results, "--max-regression", "cleanup.total_ms.p95=20%") == 2
    assert "needs a baseline" in capsys.readouterr().err


def test_bench_json_with_selectors(tmp_path: Path, capsys: Capture) -> None:
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps(BENCH))
    code = gate(bench, "--threshold", "rows[strategy=bounded,sessions=1000].measured_ms < 1s",
                "--threshold", "rows.0.model_ratio <= 1.5",
                "--threshold", "rows[strategy=sequential].measured_ms < 1s")
    out = capsys.readouterr().out
    assert code == 99
    assert "✓ rows[strategy=bounded,sessions=1000].measured_ms < 1s: measured 0.11 s" in out
    assert "✗ rows[strategy=sequential].measured_ms < 1s: measured 2.1 s" in out
    assert (tmp_path / "gate.md").is_file() and (tmp_path / "junit.xml").is_file()


def test_reports_gate_md_and_junit(results: Path) -> None:
    assert gate(results, "--threshold", "cleanup.total_ms.p95 < 0.05s", "--threshold", "pool.timeouts == 0",
                "--threshold", "cleanup.model_ratio.p95 < 150%") == 99
    md = (results / "gate.md").read_text()
    assert md.startswith("### ✗ Cleanup gate failed: 1 of 3 checks failed")
    assert "| ✗ | `cleanup.total_ms.p95 < 0.05s` | 0.08 s | < 0.05 s |" in md
    assert "| ✓ | `pool.timeouts == 0` | 0 | == 0 |" in md
    assert "| ✓ | `cleanup.model_ratio.p95 < 150%` | 120% | < 150% |" in md

    suite = ET.parse(results / "junit.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "3" and suite.get("failures") == "1"
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    expected = ["cleanup.total_ms.p95 < 0.05s", "pool.timeouts == 0", "cleanup.model_ratio.p95 < 150%"]
    assert list(cases) == expected
    failure = cases["cleanup.total_ms.p95 < 0.05s"].find("failure")
    assert failure is not None and failure.get("message") == "measured 0.08 s, limit < 0.05 s"
    assert cases["pool.timeouts == 0"].find("failure") is None


def test_thresholds_toml_with_baseline_and_regression_table(tmp_path: Path,
                                                            capsys: Capture) -> None:
    old = write_results(tmp_path / "old", SUMMARY)
    new = write_results(tmp_path / "new", summary(**{"cleanup.model_ratio.p95": 2.0}))
    toml = tmp_path / "ci" / "gate.toml"
    toml.parent.mkdir()
    toml.write_text(
        'thresholds = ["pool.timeouts == 0", "locust.failure_ratio < 1%"]\n'
        'baseline = "../old"\n'
        "[max_regression]\n"
        '"cleanup.model_ratio.p95" = "20%"\n'
    )
    assert gate(new, "--thresholds", toml) == 99
    out = capsys.readouterr().out
    assert "✓ pool.timeouts == 0" in out
    assert ("✗ regression cleanup.model_ratio.p95=20%: measured 2 (+66.67%), "
            "limit ≤ 1.44 (baseline 1.2 +20%)") in out
    assert gate(old, "--thresholds", toml) == 0


def test_thresholds_toml_list_form_and_command_line_together(results: Path, tmp_path: Path) -> None:
    toml = tmp_path / "gate.toml"
    toml.write_text(f'baseline = "{results}"\nmax_regression = ["cleanup.total_ms.p95=10%"]\n')
    assert gate(results, "--thresholds", toml, "--threshold", "cleanup.cycles > 0") == 0
    assert gate(results, "--thresholds", toml, "--threshold", "cleanup.cycles > 100") == 99


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("thresholds = [", "is not valid TOML"),
        ('thresholds = "pool.timeouts == 0"', "thresholds must be a list of strings"),
        ('threshold = ["pool.timeouts == 0"]', "unknown key(s) threshold"),
        ('thresholds = ["pool.timeouts = 0"]', "bad expression 'pool.timeouts = 0'"),
        ('baseline = "x"\n[max_regression]\n"cleanup.total_ms.p95" = 20', "values must be strings"),
    ],
)
def test_bad_thresholds_toml_exits_2(results: Path, tmp_path: Path, text: str, message: str,
                                     capsys: Capture) -> None:
    toml = tmp_path / "gate.toml"
    toml.write_text(text)
    assert gate(results, "--thresholds", toml) == 2
    assert message in capsys.readouterr().err


def test_missing_thresholds_toml_exits_2(results: Path, tmp_path: Path, capsys: Capture) -> None:
    assert gate(results, "--thresholds", tmp_path / "nope.toml") == 2
    assert f"{tmp_path / 'nope.toml'}: no such file" in capsys.readouterr().err


def test_pyproject_table_is_used_without_flags(results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: Capture) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.mcp_loadtest.gate]\n'
        'thresholds = ["cleanup.total_ms.p95 < 50ms", "sessions.leaked == 0"]\n'
    )
    monkeypatch.chdir(project)
    assert gate(results) == 99
    assert "✗ cleanup.total_ms.p95 < 50ms" in capsys.readouterr().out
    assert gate(results, "--threshold", "sessions.leaked == 0") == 0  # a flag replaces the table
    assert "cleanup.total_ms.p95" not in capsys.readouterr().out


def test_pyproject_without_the_table_is_no_checks(
    results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    monkeypatch.chdir(tmp_path)
    assert gate(results) == 2
    assert "no checks" in capsys.readouterr().err


def test_run_gate_returns_the_exit_code(results: Path, capsys: Capture) -> None:
    assert run_gate(results, ["pool.timeouts == 0"]) == 0
    assert run_gate(results, ["pool.timeouts > 0"]) == 99
    assert run_gate(results, ["pool.timeout > 0"]) == 2
    out, err = capsys.readouterr()
    assert "✓ pool.timeouts == 0" in out and "✗ pool.timeouts > 0" in out
    assert "'pool.timeout' not found" in err


def test_unwritable_report_is_a_harness_failure(results: Path, capsys: Capture) -> None:
    (results / "gate.md").mkdir()
    assert gate(results, "--threshold", "pool.timeouts == 0") == 1
    assert "cannot write the reports" in capsys.readouterr().err


def test_the_example_gate_toml_is_valid_and_passes_a_healthy_run(results: Path) -> None:
    example = Path(__file__).resolve().parents[1] / "gate.toml"
    assert run_gate(results, [], thresholds_file=example) == 0
    assert run_gate(write_results(results.parent / "leaky", summary(**{"sessions.leaked": 3})), [],
                    thresholds_file=example) == 99
