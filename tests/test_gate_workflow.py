"""The CI workflow runs the gated harness, publishes gate.md, uploads results, and fails on a failed gate."""

from __future__ import annotations

from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

WORKFLOW = Path(__file__).resolve().parents[1] / ".github" / "workflows" / "cleanup-gate.yml"


def _steps() -> list[dict]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    (job,) = workflow["jobs"].values()
    return job["steps"]


def test_workflow_installs_runs_gated_and_uploads() -> None:
    steps = _steps()
    runs = "\n".join(step.get("run", "") for step in steps)
    assert "pip install -e .[dev]" in runs
    assert "python -m harness run --run-time 60s --users 50 --out results/ci --gate gate.toml" in runs
    assert 'cat results/ci/gate.md >> "$GITHUB_STEP_SUMMARY"' in runs
    upload = next(step for step in steps if step.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["with"]["path"] == "results/" and upload["if"] == "always()"


def test_gate_step_keeps_the_exit_code() -> None:
    gate_step = next(step for step in _steps() if "--gate gate.toml" in step.get("run", ""))
    assert gate_step.get("continue-on-error") is None
    assert 'exit "$code"' in gate_step["run"] and "99)" in gate_step["run"]
