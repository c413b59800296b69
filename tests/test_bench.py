"""``harness bench`` on the embedded Postgres: rows, keys, skips and the model beside the measurement."""

import json

import pytest

from harness.capacity.bench import (
    BenchPoint,
    burst_passes,
    burst_samples,
    measure_point,
    paired_models,
    point_repeats,
    points_from_args,
)
from harness.cli import build_parser, main
from tests.golden_keys import golden, json_paths

ROW_KEYS = {"strategy", "driver", "sessions", "max_concurrent", "db_latency_ms", "measured_ms", "model_ms",
            "model_ratio", "c_eff", "binding", "skipped"}


def test_bench_cli_writes_rows_and_skips_hopeless_sequential(tmp_path, pg_url, capsys) -> None:
    out = tmp_path / "bench.json"
    code = main(["bench", "--db-url", pg_url, "--sessions", "40", "--db-latency-ms", "50",
                 "--strategy", "sequential,bounded,batched", "--max-concurrent", "8", "--repeats", "2",
                 "--max-seconds", "1", "--json", str(out)])
    assert code == 0
    rows = json.loads(out.read_text())["rows"]
    assert {r["strategy"] for r in rows} == {"sequential", "bounded", "batched"}
    for row in rows:
        assert set(row) >= ROW_KEYS
        assert row["binding"] in ("semaphore", "executor", "pool", "max_connections", "cpu", "none")
    by = {r["strategy"]: r for r in rows}
    assert by["sequential"]["skipped"] is True and by["sequential"]["measured_ms"] is None  # model 2 s > 1 s
    bounded = by["bounded"]
    assert bounded["skipped"] is False and bounded["binding"] == "semaphore" and bounded["c_eff"] == 8
    assert bounded["measured_ms"] >= 5 * 50  # ceil(40/8) rounds of at least the injected 50 ms (not the CPU)
    assert 0.5 < bounded["model_ratio"] < 5
    assert by["batched"]["measured_ms"] < bounded["measured_ms"]
    assert "measured vs model" in capsys.readouterr().out
    assert golden("bench_json") - json_paths(out) == set()  # every pinned key of the bench JSON is still there


def test_skipped_rows_respect_max_connections(tmp_path, capsys) -> None:
    """A skipped row reports what ``harness model`` says for the same knobs (the server's max_connections)."""
    out = tmp_path / "bench.json"
    knobs = ["--sessions", "100000", "--strategy", "bounded", "--max-concurrent", "50", "--pool-size", "40",
             "--max-connections", "20", "--db-latency-ms", "50"]
    assert main(["bench", *knobs, "--max-seconds", "1", "--json", str(out)]) == 0
    [row] = json.loads(out.read_text())["rows"]
    assert main(["model", *knobs, "--json"]) == 0
    model = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["skipped"] is True
    assert (row["c_eff"], row["binding"]) == (model["c_eff"], model["binding"]) == (17, "max_connections")


async def test_thread_driver_point_names_the_executor(pg_url) -> None:
    row = await measure_point(BenchPoint(strategy="bounded", driver="thread", sessions=30, max_concurrent=10,
                                         db_latency_ms=20, executor_threads=3), pg_url, repeats=1)
    # 10 rounds of ≥ 20 ms dwarf the CPU of 30 refreshes: the executor, not the CPU, binds
    assert row.binding == "executor" and row.c_eff == 3
    assert row.executor_queue_peak >= 1
    assert row.max_inflight == 10  # the semaphore admits 10; only 3 threads run them
    assert row.checked_out_peak <= 3


def test_grid_dedups_knobs_that_do_not_apply() -> None:
    args = build_parser().parse_args(["bench", "--strategy", "sequential,bounded", "--max-concurrent", "5,20",
                                      "--sessions", "10", "--driver", "async", "--executor-threads", "4,8"])
    points = points_from_args(args)
    assert sorted((p.strategy, p.max_concurrent) for p in points) == [("bounded", 5), ("bounded", 20),
                                                                       ("sequential", 5)]


@pytest.mark.parametrize("bad", [["--sessions", "0"], ["--strategy", "fast"], ["--driver", "x"]])
def test_bench_bad_arguments_exit_2(bad, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", *bad])
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_the_calibration_burst_meets_the_database_as_the_cycle_does() -> None:
    def point(**kw) -> BenchPoint:
        base = {"strategy": "bounded", "driver": "async", "sessions": 10_000, "max_concurrent": 20,
                "db_latency_ms": 0.0}
        return BenchPoint(**{**base, **kw})

    assert burst_samples(point(sessions=100)) == 100
    assert burst_samples(point()) == 2000
    assert burst_samples(point(strategy="batched")) == 5000  # 20 chunks of 500 would be 10,000: capped
    assert burst_samples(point(strategy="batched", batch_size=50)) == 1000  # one full wave of 20 chunks
    assert burst_samples(point(strategy="batched", sessions=300)) == 300


def test_short_cycles_are_measured_more_often() -> None:
    assert point_repeats(3, 20.0) == 9
    assert point_repeats(12, 20.0) == 12  # more when asked for
    assert point_repeats(3, 100.0) == 3 and point_repeats(1, 5000.0) == 1


def test_small_bursts_are_timed_in_several_passes() -> None:
    assert [burst_passes(n) for n in (1, 100, 800, 1000, 1333, 2000, 5000)] == [5, 5, 5, 4, 3, 2, 1]
    assert [burst_passes(n, "batched") for n in (1, 1000, 5000)] == [5, 5, 5]  # a few statements each


def test_each_cycle_is_modelled_with_the_costs_taken_before_it() -> None:
    from gateway_sim.costs import OpCost
    from harness.capacity.bench import CycleCosts
    from harness.capacity.model import predict

    inp = BenchPoint(strategy="bounded", driver="async", sessions=1000, max_concurrent=20,
                     db_latency_ms=0.0).model_input(1.0, 0.0, 100, 3, cpu={"cpu_refresh_ms": 0.5})
    paired = paired_models(inp, [CycleCosts(OpCost(cpu_ms=0.4, wall_ms=0.6), 1.0, 2.0, 1.5),
                                 CycleCosts(OpCost(cpu_ms=0.4, wall_ms=0.9), 0.01, 3.0, 1.2)])
    assert [(p.cpu_refresh_ms, p.burst_refresh_ms, p.cpu_share, p.expiry_ms, p.refresh_ms) for p in paired] == [
        (0.4, 0.6, 1.0, 2.0, 1.5), (0.4, 0.9, 0.05, 3.0, 1.2)]
    assert predict(paired[1]).model_ms > predict(paired[0]).model_ms  # the dearer burst, the longer cycle
    assert paired_models(inp, []) == []


async def test_a_bench_point_pairs_every_cycle_with_a_burst(pg_url) -> None:
    row = await measure_point(BenchPoint(strategy="bounded", driver="async", sessions=60, max_concurrent=10,
                                         db_latency_ms=0.0), pg_url, repeats=3)
    assert len(row.cycle_ratios) == len(row.cycles_ms) == 3 and all(r > 0 for r in row.cycle_ratios)
    assert row.model_ratio == round(sorted(row.cycle_ratios)[1], 3)  # their median
    assert row.burst_refresh_ms and row.burst_refresh_ms > 0 and row.cpu_refresh_ms and row.cpu_refresh_ms > 0
