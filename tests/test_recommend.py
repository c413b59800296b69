"""The recommendation on synthetic sweep tables with known answers, and its model extrapolation."""

import pytest

from harness.capacity.recommend import Target, extrapolate, feasible, recommend


def row(**overrides):
    base = {"strategy": "bounded", "driver": "async", "sessions": 1000, "db_latency_ms": 50.0,
            "max_concurrent": 20, "pool_size": 20, "max_overflow": 10, "executor_threads": None, "batch_size": None,
            "measured_ms_p50": 900.0, "measured_ms_p95": 950.0, "model_ms": 900.0, "c_eff": 20,
            "binding": "semaphore", "pool_timeouts": 0, "errors": 0, "refresh_ms": 50.0, "check_ms": 0.0,
            "skipped": False}
    return {**base, **overrides}


TABLE = [
    row(),                                                                              # 30 connections
    row(max_concurrent=10, pool_size=10, max_overflow=5, measured_ms_p95=1500.0),       # over the target
    row(max_concurrent=10, pool_size=10, max_overflow=10, measured_ms_p95=800.0),       # 20 connections, c=10
    row(max_concurrent=8, pool_size=10, max_overflow=10, measured_ms_p95=990.0),        # 20 connections, c=8: chosen
    row(max_concurrent=5, pool_size=5, max_overflow=5, measured_ms_p95=700.0, pool_timeouts=2),   # timeouts
    row(max_concurrent=4, pool_size=4, max_overflow=0, measured_ms_p95=600.0, errors=1),          # errors
    row(max_concurrent=3, pool_size=3, max_overflow=0, measured_ms_p95=None, skipped=True),       # not measured
    row(max_concurrent=50, pool_size=50, max_overflow=10, measured_ms_p95=300.0),       # 2 × 60 > 100 connections
]


def test_smallest_feasible_setting_is_chosen() -> None:
    [answer] = recommend(TABLE, Target(cycle_ms=1000, max_db_connections=100, gateway_workers=2))
    assert not answer.extrapolated
    assert answer.settings == {"strategy": "bounded", "max_concurrent": 8, "pool_size": 10, "max_overflow": 10}
    assert answer.connections == 40 and answer.p95_ms == 990.0
    assert "max_concurrent=8" in answer.describe()


def test_pool_size_breaks_a_tie_in_connections_and_concurrency() -> None:
    rows = [row(max_concurrent=10, pool_size=15, max_overflow=5), row(max_concurrent=10, pool_size=5,
                                                                      max_overflow=15)]
    [answer] = recommend(rows, Target(cycle_ms=1000, max_db_connections=100))
    assert answer.settings["pool_size"] == 5


def test_batched_counts_as_concurrency_one() -> None:
    rows = [row(max_concurrent=2, pool_size=5, max_overflow=0),
            row(strategy="batched", max_concurrent=None, batch_size=500, c_eff=1, binding="none", pool_size=5,
                max_overflow=0, measured_ms_p95=60.0)]
    [answer] = recommend(rows, Target(cycle_ms=1000, max_db_connections=100))
    assert answer.settings["strategy"] == "batched" and "max_concurrent" not in answer.settings


def test_nothing_feasible_says_so() -> None:
    [answer] = recommend(TABLE, Target(cycle_ms=100, max_db_connections=100))
    assert answer.settings == {} and answer.p95_ms is None
    assert "no measured setting" in answer.describe()


def test_each_driver_latency_and_count_gets_its_own_answer() -> None:
    rows = [row(), row(sessions=100, measured_ms_p95=120.0), row(driver="thread", executor_threads=6, c_eff=6,
                                                                 binding="executor")]
    answers = recommend(rows, Target(cycle_ms=1000, max_db_connections=100))
    assert [(a.driver, a.sessions) for a in answers] == [("async", 100), ("async", 1000), ("thread", 1000)]
    assert answers[2].settings["executor_threads"] == 6 and answers[2].binding == "executor"


def test_extrapolation_scales_the_model_by_the_measured_factor() -> None:
    # the model for this row at N=1000 is ceil(1000 / 20) × 50 ms = 2500 ms; a faster p95 → factor floors at 1
    measured = row(measured_ms_p95=1100.0)
    projected = extrapolate(measured, 10_000, Target(cycle_ms=1e6, max_db_connections=100))
    assert projected["measured_ms_p95"] == pytest.approx(500 * 50.0)
    assert projected["factor"] == 1.0 and projected["extrapolated_from"] == 1000
    slower = row(measured_ms_p95=2750.0)  # 1.1 × the model's 2500 ms
    projected = extrapolate(slower, 10_000, Target(cycle_ms=1e6, max_db_connections=100))
    assert projected["measured_ms_p95"] == pytest.approx(500 * 50.0 * 1.1)


def test_extrapolated_answers_beyond_the_measured_counts() -> None:
    rows = [row(measured_ms_p95=2600.0), row(max_concurrent=50, pool_size=40, max_overflow=10, c_eff=50,
                                             measured_ms_p95=1100.0)]
    answers = recommend(rows, Target(cycle_ms=15_000, max_db_connections=100), extrapolate_to=[500, 10_000])
    assert [(a.sessions, a.extrapolated) for a in answers] == [(1000, False), (10_000, True)]  # 500 is measured-range
    far = answers[1]
    # c=20: 500 rounds × 50 ms × 1.04 = 26 s > 15 s; c=50 (pool 40+10): 200 × 50 × 1.1 = 11 s
    assert far.settings["max_concurrent"] == 50 and far.p95_ms == pytest.approx(11_000)
    assert "extrapolated from N=1000" in far.note


def test_extrapolation_names_max_connections_when_the_budget_binds() -> None:
    # 4 workers share 50 connections: (50 − 3 reserved) // 4 = 11 per worker, below pool + overflow = 12
    base = row(max_concurrent=20, pool_size=8, max_overflow=4, c_eff=12, binding="pool")
    projected = extrapolate(base, 5000, Target(cycle_ms=1e6, max_db_connections=50, gateway_workers=4))
    assert projected["binding"] == "max_connections" and projected["c_eff"] == 11
    assert feasible(projected, Target(cycle_ms=1e6, max_db_connections=50, gateway_workers=4))


def test_bad_targets_are_rejected() -> None:
    with pytest.raises(ValueError):
        Target(cycle_ms=0, max_db_connections=10)
    with pytest.raises(ValueError):
        Target(cycle_ms=10, max_db_connections=10, gateway_workers=0)
