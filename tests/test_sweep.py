"""Sweep grid, skips, resume, plan files and bad input (no database: measurements are injected)."""

from pathlib import Path

import pytest

from harness.capacity.sweep import (
    POINTS_FILE,
    PointStore,
    grid_points,
    knobs,
    point_key,
    read_plan,
    resolve,
    row_from_summary,
    run_grid,
    skip_note,
)
from harness.cli import build_parser, main

EXAMPLE_PLAN = Path(__file__).resolve().parent.parent / "docs" / "sweep-example" / "plan.toml"


def spec_of(*argv: str):
    return resolve(build_parser().parse_args(["sweep", *argv]))


def test_the_issue_grid_collapses_knobs_that_do_not_apply(tmp_path) -> None:
    spec = spec_of("--sessions", "100,1000,5000", "--max-concurrent", "1,5,20,50", "--db-latency-ms", "5,50",
                   "--pool-size", "5,20", "--executor-threads", "6,32", "--strategy", "bounded,batched",
                   "--driver", "thread,async", "--out", str(tmp_path))
    points = grid_points(spec)
    # bounded: thread 3·4·2·2·2 + async 3·4·2·2; batched (no semaphore, no executor choice): 2 drivers · 3·2·2
    assert len(points) == 96 + 48 + 12 + 12
    assert len({point_key(p, spec) for p in points}) == len(points)
    batched = [knobs(p) for p in points if p.strategy == "batched"]
    assert all(k["max_concurrent"] is None and k["executor_threads"] is None and k["batch_size"] == 500
               for k in batched)
    async_bounded = [knobs(p) for p in points if p.strategy == "bounded" and p.driver == "async"]
    assert {k["executor_threads"] for k in async_bounded} == {None}
    assert {k["max_concurrent"] for k in async_bounded} == {1, 5, 20, 50}


def test_sequential_with_the_thread_driver_runs_once_whatever_the_executor(tmp_path) -> None:
    spec = spec_of("--strategy", "sequential,gather", "--driver", "thread", "--executor-threads", "2,4,8",
                   "--sessions", "10", "--out", str(tmp_path))
    by_strategy = [p.strategy for p in grid_points(spec)]
    assert by_strategy.count("sequential") == 1 and by_strategy.count("gather") == 3


def test_points_over_the_time_limit_are_skipped_by_the_model(tmp_path) -> None:
    spec = spec_of("--strategy", "sequential,bounded", "--sessions", "1000", "--db-latency-ms", "50",
                   "--max-point-seconds", "10", "--out", str(tmp_path))
    notes = {p.strategy: skip_note(p, spec) for p in grid_points(spec)}
    assert notes["bounded"] is None  # ceil(1000/20) × 51 ms ≈ 2.6 s
    assert notes["sequential"] is not None and "51.0 s > --max-point-seconds 10" in notes["sequential"]


class Interrupt(KeyboardInterrupt):
    pass


def fake_measure(calls: list, stop_after: int | None = None):
    def measure(point):
        if stop_after is not None and len(calls) == stop_after:
            raise Interrupt
        calls.append(point)
        return {**knobs(point), "measured_ms_p50": 1.0, "measured_ms_p95": 2.0, "skipped": False}

    return measure


def test_resume_measures_only_the_points_not_finished(tmp_path) -> None:
    spec = spec_of("--strategy", "sequential,bounded,batched", "--sessions", "10,20,5000", "--db-latency-ms", "5",
                   "--max-point-seconds", "5", "--out", str(tmp_path))
    points = grid_points(spec)
    runnable = [p for p in points if skip_note(p, spec) is None]
    assert len(points) == 9 and len(runnable) == 8  # sequential × 5000 × 6 ms = 30 s > 5 s
    first: list = []
    with pytest.raises(Interrupt):  # Ctrl-C during the fourth point
        run_grid(points, spec, lambda: fake_measure(first, stop_after=3))
    assert len(PointStore(tmp_path / POINTS_FILE).load()) == 3  # every finished point is on disk
    second: list = []
    statuses: list[str] = []
    rows = run_grid(points, spec, lambda: fake_measure(second), lambda point, cost, status: statuses.append(status))
    assert sorted(set(statuses)) == ["measured", "measuring", "reused", "skipped"]
    assert statuses.count("reused") == 3 and statuses.count("measured") == statuses.count("measuring") == 5
    assert not set(second) & set(first)  # nothing measured twice
    assert set(first) | set(second) == set(runnable)
    assert [r["skipped"] for r in rows].count(True) == 1 and len(rows) == 9
    factory_calls: list = []
    run_grid(points, spec, lambda: factory_calls.append(1) or fake_measure([]))
    assert factory_calls == []  # all finished: not even Postgres is started


def test_a_line_cut_short_is_ignored_and_failures_are_retried(tmp_path) -> None:
    spec = spec_of("--strategy", "bounded", "--sessions", "10,20", "--out", str(tmp_path))
    points = grid_points(spec)

    def failing(point):
        raise RuntimeError("harness run exited 1")

    rows = run_grid(points, spec, lambda: failing)
    assert all(r["skipped"] and r["note"].startswith("failed:") for r in rows)
    assert PointStore(tmp_path / POINTS_FILE).load() == {}
    PointStore(tmp_path / POINTS_FILE).append(point_key(points[0], spec), {"measured_ms_p50": 1.0})
    with (tmp_path / POINTS_FILE).open("a") as handle:
        handle.write('{"key": "cut sh')  # killed mid-write
    calls: list = []
    run_grid(points, spec, lambda: fake_measure(calls))
    assert calls == [points[1]]


def test_plan_file_sets_the_grid_and_flags_win(tmp_path) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text('out = "somewhere"\nrepeats = 2\n[grid]\nsessions = [10, 20]\nstrategy = ["bounded"]\n'
                    'db_latency_ms = 7\n[run]\nrun_time = "20s"\n[recommend]\ntarget_cycle_ms = 500\n'
                    'max_db_connections = 80\n')
    spec = spec_of("--plan", str(plan), "--sessions", "30")
    assert spec.sessions == [30] and spec.strategy == ["bounded"] and spec.db_latency_ms == [7.0]
    assert spec.repeats == 2 and spec.run_time == 20.0 and str(spec.out) == "somewhere"
    assert spec.target.cycle_ms == 500 and spec.target.max_db_connections == 80


def test_the_committed_example_plan_is_valid() -> None:
    values = read_plan(EXAMPLE_PLAN)
    assert values["sessions"] == [100, 500] and values["driver"] == ["thread", "async"]


def test_summary_of_a_run_maps_to_sweep_columns(tmp_path) -> None:
    spec = spec_of("--strategy", "bounded", "--driver", "thread", "--executor-threads", "6", "--sessions", "100",
                   "--mode", "run", "--out", str(tmp_path))
    [point] = grid_points(spec)
    summary = {"cleanup": {"total_ms": {"p50": 800.0, "p95": 900.0}, "model_ms": {"p50": 850.0},
                           "model_ratio": {"p50": 0.94}, "refresh_errors": 0},
               "pool": {"exhausted_fraction": 0.0, "waiters_peak": 3, "timeouts": 0}}
    row = row_from_summary(summary, point, spec)
    assert row["measured_ms_p95"] == 900.0 and row["model_ms"] == 850.0 and row["model_ratio"] == 0.94
    assert row["binding"] == "executor" and row["c_eff"] == 6 and row["mode"] == "run"
    assert '"run_time": 30.0' in point_key(point, spec)


@pytest.mark.parametrize(("plan_text", "message"), [
    ("[grid\nsessions = 1", "not valid TOML"),
    ("colour = 1", "unknown key 'colour'"),
    ("[grid]\nsessions = [0]", "sessions"),
    ("[grid]\nstrategy = ['fast']", "--strategy must be one of"),
    ("grid = 3", "[grid] must be a table"),
    ('mode = "later"', "mode"),
])
def test_bad_plan_files_exit_2_with_one_line(tmp_path, capsys, plan_text, message) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text(plan_text)
    assert main(["sweep", "--plan", str(plan), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("argv", [
    ["--sessions", "0"], ["--strategy", "fast"], ["--mode", "later"], ["--run-time", "soon"],
    ["--max-concurrent", "x"], ["--repeats", "1,2"],
])
def test_bad_arguments_exit_2(tmp_path, capsys, argv) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "--out", str(tmp_path), *argv])
    assert exc.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.parametrize(("argv", "message"), [
    ([], "--out DIR is required"),
    (["--out", "x", "--target-cycle-ms", "100"], "go together"),
    (["--plan", "/nonexistent/plan.toml", "--out", "x"], "no such plan file"),
])
def test_missing_pieces_exit_2(capsys, argv, message) -> None:
    assert main(["sweep", *argv]) == 2
    assert message in capsys.readouterr().err

