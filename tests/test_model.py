"""The cycle-time model and its binding constraint (pure)."""

import json

import pytest

from harness.capacity.model import ModelInput, effective_concurrency, predict
from harness.cli import main


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


def test_batched_is_one_round_trip_per_chunk_plus_checks() -> None:
    result = predict(ModelInput(sessions=1001, refresh_ms=20, strategy="batched", batch_size=500, check_ms=0.01))
    assert result.model_ms == pytest.approx(3 * 20 + 1001 * 0.01)


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
