"""``harness soak``: accounting, leaks, RSS, fds and asyncio tasks under churn (60 s form; 4 min with -m slow)."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pytest

from harness.cli import main
from harness.scenario.soak import soak_summary, unbalanced_samples
from tests.golden_keys import golden, json_paths


@pytest.mark.parametrize("duration", [
    pytest.param("60s", id="60s"),
    pytest.param("4m", id="4m", marks=[pytest.mark.slow, pytest.mark.timeout(600)]),
])
def test_soak_holds_its_invariants(tmp_path: Path, duration: str) -> None:
    out = tmp_path / "soak"
    code = main(["soak", "--duration", duration, "--sample-every", "2", "--users", "60", "--cleanup-interval", "1",
                 "--session-ttl", "4", "--out", str(out)])
    summary = json.loads((out / "summary.json").read_text())
    soak = summary["soak"]
    assert code == 0, soak
    assert {k for k in golden("summary") if k.startswith("soak")} - json_paths(out / "summary.json") == set()
    assert all(soak["checks"].values()) and soak["ok"]
    assert soak["unbalanced_samples"] == 0 and soak["accounting_samples"] >= 15
    assert soak["samples"] >= 8  # baseline, every 2 s of the load, after the drain
    figures = soak["workers"]["0"]
    assert figures["rss_growth"] < 0.10 and figures["net_fds_drained"] <= figures["net_fds_baseline"] + 2
    if platform.libc_ver()[0] == "glibc":
        assert figures["malloc_in_use_mb_first"] > 1 and figures["malloc_free_mb_last"] is not None
    reasons = summary["sessions"]["removed_by_reason"]
    assert reasons.get("disconnected", 0) + reasons.get("stream_closed", 0) > 0  # abrupt drops and closes
    assert reasons.get("expired", 0) > 0  # abandoned sessions swept
    assert summary["sessions"]["leaked"] == 0 and figures["sessions_drained"] == 0
    assert summary["config"]["drain"] == 4 + 2 * 1 + 1  # TTL + two intervals + 1 s
    report = (out / "report.html").read_text()
    assert "<h2>Soak</h2>" in report and report.count("data:image/png;base64,") == 4


def _sample(t: float, phase: str, rss_mb: float, fds: int, tasks: int) -> dict:
    return {"t": t, "phase": phase, "worker": "0", "rss_bytes": int(rss_mb * 2**20), "open_fds": fds,
            "pool_connections": 5, "asyncio_tasks": tasks, "sessions_persistent": 0, "sessions_active": 0}


def _samples(rss_end: float, fds_end: int, tasks_end: int, sessions_end: int = 0) -> list[dict]:
    load = [_sample(t, "load", 60 + (rss_end - 60) * t / 100, 40, 30) for t in range(0, 101, 5)]
    drained = {**_sample(105, "drained", rss_end, fds_end, tasks_end), "sessions_active": sessions_end}
    return [_sample(-1, "baseline", 60, 20, 4), *load, drained]


EVENTS = [{"t": 0.0, "kind": "load_start"}, {"t": 100.0, "kind": "load_end"}]
BALANCED = [{"sessions_created": 10, "sessions_removed": 7, "sessions_active": 3}]


def test_soak_checks_pass_on_a_steady_gateway() -> None:
    soak = soak_summary(_samples(61, 20, 4), BALANCED, EVENTS, leaked=0)
    assert soak.ok and soak.workers["0"].window_s == 25
    assert soak.workers["0"].malloc_in_use_mb_first is None  # not reported: no figure, no failure


def test_soak_figures_split_malloc_in_use_from_kept_free() -> None:
    samples = _samples(61, 20, 4)
    for s in samples:
        s["malloc_in_use_bytes"], s["malloc_free_bytes"] = 16 * 2**20, int(s["t"] * 2**20 / 10)
    figures = soak_summary(samples, BALANCED, EVENTS, leaked=0).workers["0"]
    assert figures.malloc_in_use_mb_first == figures.malloc_in_use_mb_last == 16
    assert figures.malloc_free_mb_first == 1.25 and figures.malloc_free_mb_last == 8.75  # t 0-25, 75-100


@pytest.mark.parametrize("samples, pool_samples, leaked, failing", [
    (_samples(75, 20, 4), BALANCED, 0, "rss_growth_below_10pct"),
    (_samples(61, 30, 4), BALANCED, 0, "fds_back_to_baseline"),
    (_samples(61, 20, 12), BALANCED, 0, "tasks_back_to_baseline"),
    (_samples(61, 20, 4), [{"sessions_created": 10, "sessions_removed": 6, "sessions_active": 3}], 0,
     "balanced_every_sample"),
    (_samples(61, 20, 4), BALANCED, 2, "no_leaked_rows"),
    (_samples(61, 20, 4, sessions_end=1), BALANCED, 0, "no_sessions_after_drain"),
])
def test_soak_checks_catch_growth_and_leaks(samples, pool_samples, leaked, failing) -> None:
    soak = soak_summary(samples, pool_samples, EVENTS, leaked)
    assert not soak.ok
    assert [name for name, passed in soak.checks.items() if not passed] == [failing]
    assert unbalanced_samples(pool_samples) == (1 if failing == "balanced_every_sample" else 0)
