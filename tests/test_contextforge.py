"""``--registry contextforge``: ContextForge's own SessionRegistry hosted by the gateway, on the embedded Postgres.

The run and the parity bench need its environment (``python -m harness contextforge setup``); the fixture builds
it when a Python >= 3.12 can be found and skips with the reason otherwise. Refused knobs and the missing-environment
message need no environment.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import UsageError
from harness.sut import contextforge_env as cfe

pytestmark = pytest.mark.contextforge

SHORT_RUN = ["--run-time", "14s", "--users", "24", "--spawn-rate", "12", "--cleanup-interval", "1",
             "--session-lifetime", "2-4", "--session-ttl", "4", "--abrupt-ratio", "0.4", "--abandon-ratio", "0.5",
             "--transport-mix", "0.7", "--db-latency-ms", "5", "--drain", "6", "--no-progress"]


@pytest.fixture(scope="module")
def cf_env() -> cfe.ContextForgeEnv:
    """The environment, built here if missing and a Python >= 3.12 exists; else the test skips saying why."""
    try:
        return cfe.find_env()
    except UsageError:
        pass
    try:
        cfe.find_python()
    except cfe.EnvError as exc:
        pytest.skip(f"no ContextForge environment and none can be built: {exc}")
    try:
        return cfe.build_env()[0]
    except (cfe.EnvError, UsageError) as exc:
        pytest.skip(f"the ContextForge environment could not be built: {exc}")


@pytest.fixture(scope="module")
def cf_run(cf_env, tmp_path_factory) -> tuple[int, Path]:
    out = tmp_path_factory.mktemp("cf-run") / "results"
    return main(["run", "--registry", "contextforge", *SHORT_RUN, "--out", str(out)]), out


def test_a_short_run_on_the_real_registry(cf_run, cf_env) -> None:
    code, out = cf_run
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    cleanup, sessions, locust = summary["cleanup"], summary["sessions"], summary["locust"]
    assert summary["config"]["registry_name"] == "contextforge"
    assert summary["config"]["strategy"] == "bounded" and summary["config"]["driver"] == "thread"
    assert summary["versions"][cfe.PACKAGE] == cf_env.version
    assert json.loads((out / "manifest.json").read_text())["versions"][cfe.PACKAGE] == cf_env.version
    assert cleanup["cycles"] >= 5
    assert cleanup["total_ms"]["p95"] >= cleanup["total_ms"]["p50"] > 0
    assert cleanup["refreshed"] > 0 and cleanup["max_inflight"] >= 1
    assert cleanup["removed_disconnected"] > 0  # abrupt SSE drops, found by its own phase 1
    assert sessions["leaked"] == 0 and sessions["rows_after_shutdown"] == 0
    assert sessions["balanced"] is True and sessions["created"] >= 24
    assert locust["requests"] > 100 and locust["failure_ratio"] < 0.01
    secrets_in_results = [p for p in out.rglob("*") if p.is_file() and b"JWT_SECRET_KEY=" in p.read_bytes()]
    assert secrets_in_results == []


def test_its_cycles_reach_the_locust_cleanup_rows(cf_run) -> None:
    _, out = cf_run
    stats = (out / "locust_stats.csv").read_text()
    assert "CLEANUP,cycle" in stats and "CLEANUP,phase2" in stats


def test_parity_with_the_sim_registry(cf_env, tmp_path, pg_url) -> None:
    out = tmp_path / "parity.json"
    code = main(["bench", "--db-url", pg_url, "--registry", "sim,contextforge", "--sessions", "100",
                 "--db-latency-ms", "20", "--max-concurrent", "20", "--driver", "thread", "--strategy", "bounded",
                 "--executor-threads", "6", "--pool-size", "40", "--repeats", "2", "--json", str(out)])
    assert code == 0
    payload = json.loads(out.read_text())
    rows = {r["registry"]: r for r in payload["rows"]}
    assert set(rows) == {"sim", "contextforge"}
    cf, sim = rows["contextforge"], rows["sim"]
    assert cf["strategy"] == "bounded" and cf["driver"] == "thread" and cf["binding"] == "executor"
    assert cf["max_inflight"] == 20 and cf["errors"] == 0  # the semaphore admits 20; 6 threads run them
    assert 0.5 < cf["measured_ms"] / sim["measured_ms"] < 2.0
    assert payload["manifest"]["versions"][cfe.PACKAGE] == cf_env.version


@pytest.mark.parametrize("argv, flag", [
    (["run", "--registry", "contextforge", "--strategy", "batched"], "--strategy"),
    (["run", "--registry", "contextforge", "--driver", "async"], "--driver"),
    (["up", "--registry", "contextforge", "--batch-size", "10"], "--batch-size"),
    (["bench", "--registry", "contextforge", "--strategy", "bounded"], "--strategy"),
    (["sweep", "--registry", "contextforge", "--driver", "thread", "--out", "unused"], "--driver"),
])
def test_knobs_it_does_not_have_are_refused(argv, flag, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{flag} does not apply to --registry contextforge" in err
    assert not (tmp_path / "unused").exists() and not (tmp_path / "results").exists()


def test_crossing_registries_applies_sim_knobs_to_sim_points_only() -> None:
    from harness.capacity.bench import points_from_args
    from harness.cli import build_parser

    args = build_parser().parse_args(["bench", "--registry", "sim,contextforge", "--strategy", "bounded,batched",
                                      "--driver", "async", "--sessions", "10"])
    points = {(p.registry_name, p.strategy, p.driver) for p in points_from_args(args)}
    assert points == {("sim", "bounded", "async"), ("sim", "batched", "async"), ("contextforge", "bounded", "thread")}


@pytest.mark.parametrize("argv", [["run", "--registry", "contextforge"], ["up", "--registry", "contextforge"],
                                  ["bench", "--registry", "sim,contextforge"],
                                  ["sweep", "--registry", "contextforge", "--out", "unused"]])
def test_missing_environment_names_the_setup_command(argv, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MCP_LOADTEST_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "run `python -m harness contextforge setup` first" in err
    assert not (tmp_path / "unused").exists() and not (tmp_path / "results").exists()


def test_setup_refuses_a_python_below_3_12(capsys, tmp_path, monkeypatch) -> None:
    import sys

    monkeypatch.setenv("MCP_LOADTEST_CACHE", str(tmp_path))
    assert main(["contextforge", "setup", "--python", sys.executable]) == (2 if sys.version_info < (3, 12) else 0)
    if sys.version_info < (3, 12):
        assert "ContextForge needs >= 3.12" in capsys.readouterr().err


def test_a_second_setup_reuses_the_environment(cf_env, capsys) -> None:
    assert main(["contextforge", "setup"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == cf_env.path and "reused" in captured.err
