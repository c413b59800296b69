"""The cycle-time model and its binding constraint (pure)."""

import json

import pytest

from harness.capacity.model import (
    ModelInput,
    effective_concurrency,
    overlap_norm,
    phase2_ms,
    pipeline_ms,
    predict,
)
from harness.cli import main


def waves_of_20(sessions: int, refresh_ms: float, roof_ms: float) -> float:
    """Phase 2 of ``sessions`` single refreshes, 20 at a time, on the event loop."""
    return pipeline_ms(refresh_ms, -(-sessions // 20), sessions, 20, roof_ms)


def test_seed_example_bounded_100_sessions_50ms() -> None:
    result = predict(ModelInput(sessions=100, refresh_ms=50, max_concurrent=20, pool_size=50))
    assert result.model_ms == 250
    assert (result.c_eff, result.binding) == (20, "semaphore")


def test_sequential_is_n_times_latency() -> None:
    assert predict(ModelInput(sessions=100, refresh_ms=50, strategy="sequential")).model_ms == 5000


def test_executor_binds_for_the_thread_driver_below_the_semaphore() -> None:
    inp = ModelInput(sessions=100, refresh_ms=50, driver="thread", executor_threads=6)
    c_eff, binding, limits = effective_concurrency(inp)
    assert (c_eff, binding) == (6, "executor")
    assert limits["semaphore"] == 20
    assert predict(inp).model_ms == 17 * 50


@pytest.mark.parametrize(
    ("kwargs", "binding", "c_eff"),
    [
        ({"pool_size": 5, "max_overflow": 2}, "pool", 7),
        ({"max_connections": 10, "pool_size": 50}, "max_connections", 7),
        ({"max_connections": 100, "pool_size": 50, "gateway_workers": 4, "max_concurrent": 50}, "max_connections", 24),
        ({"strategy": "gather", "pool_size": 5, "max_overflow": 0}, "pool", 5),
        ({"max_concurrent": 500, "pool_size": 500, "max_connections": 1000}, "none", 300),
    ],
)
def test_binding_constraint(kwargs, binding, c_eff) -> None:
    result = predict(ModelInput(sessions=300, refresh_ms=10, **kwargs))
    assert (result.binding, result.c_eff) == (binding, c_eff)


def test_batched_is_one_round_trip_per_wave_of_chunks_plus_checks() -> None:
    result = predict(ModelInput(sessions=1001, refresh_ms=20, strategy="batched", batch_size=500, check_ms=0.01))
    assert (result.model_ms, result.c_eff, result.binding) == (pytest.approx(20 + 1001 * 0.01), 3, "none")
    two = predict(ModelInput(sessions=1001, refresh_ms=20, strategy="batched", batch_size=100, max_concurrent=4))
    assert (two.model_ms, two.c_eff, two.binding) == (pytest.approx(3 * 20), 4, "semaphore")  # 11 chunks, 4 at once
    pool = predict(ModelInput(sessions=10_000, refresh_ms=20, strategy="batched", batch_size=10, max_concurrent=50,
                              pool_size=5, max_overflow=0))
    assert (pool.c_eff, pool.binding, pool.terms["refresh_db_ms"]) == (5, "pool", 200 * 20)


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="executor_threads"):
        ModelInput(sessions=10, refresh_ms=1, driver="thread")
    with pytest.raises(ValueError, match="max_concurrent"):
        ModelInput(sessions=10, refresh_ms=1, max_concurrent=0)


def test_model_command_json(capsys) -> None:
    code = main(["model", "--sessions", "20000", "--db-latency-ms", "30", "--max-concurrent", "20",
                 "--pool-size", "50", "--executor-threads", "6", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["binding"] == "executor" and out["c_eff"] == 6
    assert out["model_ms"] == pytest.approx(3334 * 30)


def test_model_command_bad_argument_exits_2(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["model", "--sessions", "many", "--db-latency-ms", "30"])
    assert exc.value.code == 2
    assert "is not a valid int" in capsys.readouterr().err


def test_cpu_roof_binds_when_the_loop_is_slower_than_the_round_trips() -> None:
    # 1000 sessions, c=20, L=1 ms: 50 rounds × 1 ms = 50 ms of round trips, but 1000 × 0.2 ms = 200 ms of CPU
    result = predict(ModelInput(sessions=1000, refresh_ms=1.0, cpu_refresh_ms=0.2))
    assert result.binding == "cpu"
    # the first round trip, the other 49 overlapped with the work on 980 refreshes, the work on the last 20
    assert result.model_ms == pytest.approx(1.0 + phase2_ms(49.0, 980 * 0.2) + 19 * 0.2, abs=1e-3)
    assert result.terms["refresh_db_ms"] == pytest.approx(50.0)
    assert result.c_eff == 20  # the concurrency limit is still reported


def test_round_trips_bind_when_the_cpu_roof_is_lower() -> None:
    # L=50 ms: 50 rounds × 50 ms = 2500 ms > 1000 × 0.2 ms
    result = predict(ModelInput(sessions=1000, refresh_ms=50.0, cpu_refresh_ms=0.2))
    assert (result.binding, result.model_ms) == ("semaphore",
                                                 pytest.approx(50.0 + phase2_ms(2450.0, 196.0) + 19 * 0.2, abs=1e-3))


def test_cpu_roof_applies_to_batched_refreshes() -> None:
    result = predict(ModelInput(sessions=10_000, refresh_ms=30.0, strategy="batched", cpu_refresh_ms=0.001))
    assert result.terms["refresh_db_ms"] == 30.0  # 20 chunks of 500, all 20 in flight at once
    assert result.binding == "none"
    result = predict(ModelInput(sessions=10_000, refresh_ms=2.0, strategy="batched", cpu_refresh_ms=0.01))
    # one wave of 20 chunks: the first reply after one round trip, then 5 ms of the loop's work per other chunk
    assert (result.binding, result.model_ms) == ("cpu", pytest.approx(2.0 + 19 * 5.0, abs=1e-3))
    result = predict(ModelInput(sessions=10_000, refresh_ms=2.0, strategy="batched", cpu_refresh_ms=0.01,
                                max_concurrent=5))  # four waves of five chunks: the roofs' smooth maximum
    assert (result.binding, result.model_ms) == ("cpu", pytest.approx(2.0 + phase2_ms(6.0, 75.0) + 4 * 5.0, abs=1e-3))


def test_the_thread_driver_overlaps_its_roofs_better() -> None:
    assert (overlap_norm("async"), overlap_norm("thread")) == (1.5, 4.0)
    kw = {"sessions": 1000, "refresh_ms": 10.0, "cpu_refresh_ms": 0.3}
    on_loop = predict(ModelInput(**kw))
    threads = predict(ModelInput(**kw, driver="thread", executor_threads=20))
    assert on_loop.terms == threads.terms  # the same two roofs: 50 waves of 10 ms, 1000 × 0.3 ms
    assert threads.model_ms == pytest.approx(10.0 + phase2_ms(490.0, 294.0, norm=4.0) + 19 * 0.3, abs=1e-3)
    assert max(500.0, 300.0) < threads.model_ms < on_loop.model_ms


def test_one_wave_is_a_round_trip_and_the_loops_work_on_the_others() -> None:
    assert pipeline_ms(2.0, 1, 1, 20, 5.0) == 2.0  # one statement: its round trip, whatever the roof
    assert pipeline_ms(2.0, 1, 4, 20, 5.0) == 17.0
    assert pipeline_ms(2.0, 0, 0, 20, 5.0) == 0.0
    # one batched chunk (100 sessions ≤ batch_size): the round trip alone, not combined with the burst's roof
    result = predict(ModelInput(sessions=100, refresh_ms=2.0, strategy="batched", burst_refresh_ms=0.05,
                                expiry_ms=1.0))
    assert result.model_ms == pytest.approx(3.0)
    assert result.terms["refresh_cpu_ms"] == pytest.approx(5.0)  # the roof is still reported
    # bounded, 10 sessions under a semaphore of 20: one wave of 10 single refreshes
    result = predict(ModelInput(sessions=10, refresh_ms=12.0, cpu_refresh_ms=0.5))
    assert result.model_ms == pytest.approx(12.0 + 9 * 0.5)


def test_the_two_roofs_combine_as_a_smooth_maximum() -> None:
    assert phase2_ms(300.0, 400.0, norm=2.0) == pytest.approx(500.0)  # close roofs: longer than either
    assert phase2_ms(300.0, 400.0) == pytest.approx((300.0**1.5 + 400.0**1.5) ** (1 / 1.5))  # the default, p = 1.5
    assert 400.0 < phase2_ms(300.0, 400.0) < 700.0  # between the max and the sum
    assert phase2_ms(1000.0, 10.0) == pytest.approx(1001.0, abs=0.5)  # far apart: about the larger one
    assert phase2_ms(0.0, 7.0) == 7.0 and phase2_ms(7.0, 0.0) == 7.0
    assert phase2_ms(300.0, 400.0, norm=50.0) == pytest.approx(400.0, rel=1e-3)  # p → ∞ is the max


def test_checks_count_every_session_connected_or_not() -> None:
    result = predict(ModelInput(sessions=900, disconnected=100, refresh_ms=0.0, cpu_check_ms=0.01))
    assert result.terms["check_ms"] == pytest.approx(10.0)
    # the older --check-ms is the same cost: the larger one counts, not both
    both = predict(ModelInput(sessions=900, disconnected=100, refresh_ms=0.0, check_ms=0.02, cpu_check_ms=0.01))
    assert both.terms["check_ms"] == pytest.approx(20.0)


@pytest.mark.parametrize("disconnected", [1000, 5000])
def test_phase1_removal_per_session_pays_a_round_trip_each_batched_one(disconnected: int) -> None:
    common = {"sessions": 0, "refresh_ms": 10.0, "disconnected": disconnected, "delete_ms": 0.8,
              "cpu_remove_ms": 0.05}
    per_session = predict(ModelInput(phase1_removal="per-session", **common))
    batched = predict(ModelInput(phase1_removal="batched", **common))
    assert per_session.model_ms == pytest.approx(disconnected * 0.85)
    assert batched.model_ms == pytest.approx(0.8 + disconnected * 0.05)
    assert per_session.model_ms / batched.model_ms > 10


def test_no_disconnects_cost_no_removal_in_either_mode() -> None:
    for mode in ("per-session", "batched"):
        assert predict(ModelInput(sessions=10, refresh_ms=1.0, delete_ms=5.0, phase1_removal=mode)).terms[
            "removal_ms"] == 0.0


def test_bad_cpu_costs_and_modes_are_rejected() -> None:
    with pytest.raises(ValueError):
        ModelInput(sessions=1, refresh_ms=1.0, cpu_refresh_ms=-1.0)
    with pytest.raises(ValueError):
        ModelInput(sessions=1, refresh_ms=1.0, phase1_removal="sometimes")


def test_model_command_takes_the_cpu_costs(capsys) -> None:
    assert main(["model", "--sessions", "1000", "--db-latency-ms", "1", "--cpu-refresh-ms", "0.2",
                 "--cpu-check-ms", "0.01", "--cpu-remove-ms", "0.05", "--disconnected", "100",
                 "--phase1-removal", "batched", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["binding"] == "cpu"
    assert out["model_ms"] == pytest.approx(1100 * 0.01 + 0.05 * 100 + waves_of_20(1000, 1.0, 0.2), abs=1e-3)
    assert main(["model", "--sessions", "10", "--db-latency-ms", "1", "--cpu-refresh-ms", "-1"]) == 2


def test_cpu_share_stretches_the_cpu_roof_only() -> None:
    half = predict(ModelInput(sessions=1000, refresh_ms=1.0, cpu_refresh_ms=0.2, cpu_share=0.5))
    assert half.terms["refresh_cpu_ms"] == pytest.approx(400.0)
    assert half.terms["refresh_db_ms"] == pytest.approx(50.0)
    with pytest.raises(ValueError):
        ModelInput(sessions=1, refresh_ms=1.0, cpu_share=0.0)


def test_a_burst_slower_than_the_loops_cpu_raises_the_roof(capsys) -> None:
    """At zero latency the burst's wall time per refresh is the throughput the cycle can reach; when the
    database's side is slower than the loop's CPU, the roof is the burst's, never below the CPU's."""
    cpu_only = predict(ModelInput(sessions=1000, refresh_ms=1.0, cpu_refresh_ms=0.3))
    database = predict(ModelInput(sessions=1000, refresh_ms=1.0, cpu_refresh_ms=0.3, burst_refresh_ms=0.7))
    assert (cpu_only.model_ms, database.model_ms) == (pytest.approx(waves_of_20(1000, 1.0, 0.3), abs=1e-3),
                                                      pytest.approx(waves_of_20(1000, 1.0, 0.7), abs=1e-3))
    assert database.binding == "cpu" and database.terms["refresh_cpu_ms"] == pytest.approx(700.0)
    shared = predict(ModelInput(sessions=1000, refresh_ms=1.0, cpu_refresh_ms=0.3, burst_refresh_ms=0.2, cpu_share=0.5))
    assert shared.model_ms == pytest.approx(waves_of_20(1000, 1.0, 0.6), abs=1e-3)  # CPU over its share beats the burst
    assert main(["model", "--sessions", "1000", "--db-latency-ms", "1", "--cpu-refresh-ms", "0.3",
                 "--burst-refresh-ms", "0.7", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model_ms"] == pytest.approx(waves_of_20(1000, 1.0, 0.7), abs=1e-3)


def test_the_ttl_sweep_adds_its_own_round_trip_once_per_cycle(capsys) -> None:
    without = predict(ModelInput(sessions=100, refresh_ms=2.0, cpu_refresh_ms=0.1))
    with_sweep = predict(ModelInput(sessions=100, refresh_ms=2.0, cpu_refresh_ms=0.1, expiry_ms=3.5))
    assert with_sweep.model_ms == pytest.approx(without.model_ms + 3.5, abs=1e-3)
    assert with_sweep.terms["expiry_ms"] == 3.5 and without.terms["expiry_ms"] == 0.0
    empty = predict(ModelInput(sessions=0, refresh_ms=2.0, expiry_ms=3.5))
    assert empty.model_ms == pytest.approx(3.5)  # no session, still the sweep
    with pytest.raises(ValueError):
        ModelInput(sessions=1, refresh_ms=1.0, expiry_ms=-1.0)
    assert main(["model", "--sessions", "100", "--db-latency-ms", "2", "--expiry-ms", "3.5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["terms"]["expiry_ms"] == 3.5
