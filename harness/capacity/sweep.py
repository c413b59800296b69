"""Capacity-planning sweeps: the cartesian grid of cleanup knobs, each point measured beside the model.

``python -m harness sweep --sessions 100,1000 --max-concurrent 5,20 --db-latency-ms 5,50 --pool-size 5,20
--executor-threads 6,32 --strategy bounded,batched --driver thread,async --out DIR`` measures every point
(``--mode bench``: cleanup cycles run in-process; ``--mode run``: each point driven by Locust through
``harness run``), skips points whose model exceeds ``--max-point-seconds``, and writes ``DIR/sweep.csv``,
``DIR/sweep.json`` and ``DIR/report.html``. Knobs that do not apply to a point collapse (executor threads
outside the thread driver's concurrent strategies, ``max_concurrent`` outside ``bounded``, the batch size
outside ``batched``), so no point runs twice.

Resumable: each finished point is appended to ``DIR/points.jsonl`` at once, keyed by its knobs; re-running
with the same ``--out`` measures only the points not there yet.

``--plan plan.toml`` reads the same options from TOML; flags given on the command line win. Keys are the
long option names with ``_`` for ``-``: top-level ``out``, ``mode``, ``repeats``, ``max_point_seconds``,
``pool_timeout``, ``db_jitter_ms``, ``db``, ``db_url``, ``max_connections``; table ``[grid]`` with
``sessions``, ``max_concurrent``, ``db_latency_ms``, ``pool_size``, ``max_overflow``, ``executor_threads``,
``strategy``, ``driver``, ``batch_size`` (a list or one value each); ``[run]`` with ``run_time``, ``users``;
``[recommend]`` with ``target_cycle_ms``, ``max_db_connections``, ``gateway_workers``,
``extrapolate_sessions``. Relative paths are relative to the current directory.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway_sim.config import DRIVERS, STRATEGIES, default_executor_threads, registry_name
from harness.capacity.bench import (
    BenchPoint,
    collapse,
    expand,
    measure,
    nominal_model_ms,
    registry_package_versions,
    registry_pythons,
    sim_only_knobs,
    skipped_row,
)
from harness.capacity.model import predict
from harness.capacity.recommend import Recommendation, Target, recommend, recommend_per_strategy
from harness.commands.arglists import duration_seconds, list_of
from harness.errors import UsageError
from harness.gate.tomlfile import read_toml

MODES = ("bench", "run")
GRID = ("registry", "strategy", "driver", "sessions", "max_concurrent", "db_latency_ms", "pool_size", "max_overflow",
        "executor_threads", "batch_size")
COLUMNS = (*GRID, "measured_ms_p50", "measured_ms_p95", "model_ms", "model_ratio", "c_eff", "binding",
           "pool_exhausted_fraction", "waiters_peak", "pool_timeouts", "errors", "refresh_ms", "check_ms",
           "max_inflight", "checked_out_peak", "wait_ms_p95", "executor_queue_peak", "mode", "skipped", "note")
POINTS_FILE = "points.jsonl"
Row = dict[str, Any]
Measure = Callable[[BenchPoint], Row]


def _scalar(convert: Callable[[str], Any], minimum: float | None = None) -> Callable[[str], Any]:
    parse_list = list_of(convert, minimum=minimum)

    def parse(text: str) -> Any:
        values = parse_list(text)
        if len(values) != 1:
            raise argparse.ArgumentTypeError(f"{text!r}: expected one value")
        return values[0]

    parse.__name__ = convert.__name__
    return parse


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.strip() not in choices:
            raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(choices)}")
        return text.strip()

    parse.__name__ = "choice"
    return parse


def _run_time(text: str) -> str:
    duration_seconds(text)
    return text.strip()


@dataclass(frozen=True)
class Option:
    """One sweep option: its CLI flag, TOML key (``name``), table, parser and default."""

    name: str
    convert: Callable[[str], Any]
    default: Any
    help: str
    section: str = ""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option("registry", list_of(registry_name), ["sim"], "registries: sim, contextforge", "grid"),
    Option("sessions", list_of(int, minimum=1), [100, 1000], "session counts", "grid"),
    Option("max_concurrent", list_of(int, minimum=1), [20], "semaphore bounds (bounded only)", "grid"),
    Option("db_latency_ms", list_of(float, minimum=0), [20.0], "injected refresh latencies, ms", "grid"),
    Option("pool_size", list_of(int, minimum=1), [20], "SQLAlchemy pool sizes", "grid"),
    Option("max_overflow", list_of(int, minimum=0), [10], "SQLAlchemy max_overflow values", "grid"),
    Option("executor_threads", list_of(int, minimum=1), [default_executor_threads()],
           "executor sizes (thread driver, concurrent strategies)", "grid"),
    # sim points only: None means not given (a contextforge-only grid refuses them; see resolve)
    Option("strategy", list_of(str, choices=STRATEGIES), None, "strategies (default all four; sim only)", "grid"),
    Option("driver", list_of(str, choices=DRIVERS), None, "drivers: thread, async (default async; sim only)", "grid"),
    Option("batch_size", list_of(int, minimum=1), None, "ids per UPDATE (batched only; default 500; sim only)",
           "grid"),
    Option("out", Path, None, "output directory (required; re-use it to resume)"),
    Option("mode", _choice(*MODES), "bench", "bench: cycles in-process; run: Locust through 'harness run'"),
    Option("repeats", _scalar(int, 1), 3, "measured cycles per point in bench mode"),
    Option("max_point_seconds", _scalar(float, 0), 60.0, "skip points whose model cycle exceeds this, s"),
    Option("pool_timeout", _scalar(float, 0.001), 30.0, "SQLAlchemy pool_timeout, s"),
    Option("db_jitter_ms", _scalar(float, 0), 0.0, "± jitter on the latency, ms"),
    Option("db", str, None, "embedded (default) | docker | a postgresql:// URL"),
    Option("db_url", str, None, "an existing server's URL (wins over --db)"),
    Option("max_connections", _scalar(int, 1), 100, "max_connections of the embedded server"),
    Option("contextforge_version", str, "1.1.0", "registry contextforge: the release to run"),
    Option("contextforge_source", Path, None, "registry contextforge: the environment of 'setup --source PATH'"),
    Option("run_time", _run_time, "30s", "run mode: Locust run time per point", "run"),
    Option("cleanup_interval", _scalar(float, 0.001), 5.0, "run mode: seconds between cleanup cycles", "run"),
    Option("users", _scalar(int, 1), None, "run mode: Locust users per point (default: the point's sessions)",
           "run"),
    Option("target_cycle_ms", _scalar(float, 0), None, "recommendation: cycle p95 target, ms", "recommend"),
    Option("max_db_connections", _scalar(int, 1), None, "recommendation: DB connection budget", "recommend"),
    Option("gateway_workers", _scalar(int, 1), 1, "recommendation: gateway worker processes", "recommend"),
    Option("extrapolate_sessions", list_of(int, minimum=1), None,
           "recommendation: larger session counts to extrapolate to (default 10× the largest)", "recommend"),
)
_BY_NAME = {o.name: o for o in OPTIONS}


@dataclass(frozen=True)
class SweepSpec:
    """A resolved sweep: the grid lists and every scalar option."""

    values: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def out(self) -> Path:
        return Path(self.values["out"])

    @property
    def target(self) -> Target | None:
        if self.values["target_cycle_ms"] is None:
            return None
        return Target(self.values["target_cycle_ms"], self.values["max_db_connections"],
                      self.values["gateway_workers"])


def _convert(option: Option, value: Any, where: str) -> Any:
    if isinstance(value, bool | dict):
        raise UsageError(f"{where}: {option.name} has the wrong type")
    text = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
    try:
        return option.convert(text)
    except (argparse.ArgumentTypeError, ValueError) as exc:
        raise UsageError(f"{where}: {option.name}: {exc}") from None


def read_plan(path: Path) -> dict[str, Any]:
    """The options a plan file sets, converted and checked like their command-line flags."""
    data = read_toml(path, "plan file")
    values: dict[str, Any] = {}
    sections = {o.section for o in OPTIONS} - {""}
    for key, value in data.items():
        table = value if key in sections else {key: value}
        if key in sections and not isinstance(value, dict):
            raise UsageError(f"{path}: [{key}] must be a table")
        section = key if key in sections else ""
        for name, item in table.items():
            option = _BY_NAME.get(name)
            if option is None or option.section != section:
                place = f"[{section}]" if section else "the top level"
                raise UsageError(f"{path}: unknown key {name!r} at {place}")
            values[name] = _convert(option, item, str(path))
    return values


def resolve(args: argparse.Namespace) -> SweepSpec:
    """Defaults, then the plan file, then the flags given on the command line."""
    values = {o.name: o.default for o in OPTIONS}
    if args.plan is not None:
        values.update(read_plan(args.plan))
    values.update({o.name: getattr(args, o.name) for o in OPTIONS if getattr(args, o.name) is not None})
    if values["out"] is None:
        raise UsageError("--out DIR is required (or out = \"DIR\" in the plan)")
    if (values["target_cycle_ms"] is None) != (values["max_db_connections"] is None):
        raise UsageError("--target-cycle-ms and --max-db-connections go together")
    values.update(sim_only_knobs(values["registry"], {k: values[k] for k in ("strategy", "driver", "batch_size")}))
    return SweepSpec(values)


# --- the grid ---------------------------------------------------------------------------------------
def grid_points(spec: SweepSpec) -> list[BenchPoint]:
    """The cartesian product of the grid lists, with knobs that do not apply collapsed."""
    points = expand({name: spec.values[name] for name in GRID},
                    {"db_jitter_ms": spec.db_jitter_ms, "pool_timeout": spec.pool_timeout})
    return collapse(points, executor_threads=spec.executor_threads[0], max_concurrent=spec.max_concurrent[0],
                    batch_size=spec.batch_size[0])


def knobs(point: BenchPoint) -> dict[str, Any]:
    """A point's knobs as the sweep reports them: ``None`` for a knob that does not apply."""
    concurrent = point.strategy in ("gather", "bounded")
    return {
        "registry": point.registry, "strategy": point.strategy, "driver": point.driver, "sessions": point.sessions,
        "max_concurrent": point.max_concurrent if point.strategy == "bounded" else None,
        "db_latency_ms": point.db_latency_ms, "pool_size": point.pool_size, "max_overflow": point.max_overflow,
        "executor_threads": point.executor_threads if point.driver == "thread" and concurrent else None,
        "batch_size": point.batch_size if point.strategy == "batched" else None,
    }


def point_key(point: BenchPoint, spec: SweepSpec) -> str:
    """What identifies a finished point across re-runs of the same sweep."""
    key = {**knobs(point), "db_jitter_ms": point.db_jitter_ms, "pool_timeout": point.pool_timeout,
           "mode": spec.mode}
    if key["registry"] == "sim":
        del key["registry"]  # sweeps from before the registry axis resume as they were
    if spec.mode == "run":
        key.update(run_time=spec.run_time, users=spec.users)
    return json.dumps(key, sort_keys=True)


def estimated_seconds(point: BenchPoint, spec: SweepSpec) -> float:
    """A rough wall-clock cost of measuring ``point`` (weights the progress bar's ETA)."""
    if spec.mode == "run":
        return duration_seconds(spec.run_time) + 15.0
    cycle = nominal_model_ms(point, spec.max_connections) / 1000.0
    return 1.0 + point.sessions * 0.0005 + (spec.repeats + 1) * cycle + 0.015 * point.db_latency_ms


def skip_note(point: BenchPoint, spec: SweepSpec) -> str | None:
    """Why the point is not run, or ``None``."""
    nominal = nominal_model_ms(point, spec.max_connections)
    if nominal > spec.max_point_seconds * 1000.0:
        return f"skipped: model {nominal / 1000:.1f} s > --max-point-seconds {spec.max_point_seconds:g}"
    return None


# --- rows -------------------------------------------------------------------------------------------
def row_from_bench(bench: dict[str, Any], point: BenchPoint, mode: str) -> Row:
    """A bench row in the sweep's columns (``measured_ms`` is the median, i.e. p50)."""
    row = {**bench, **knobs(point), "measured_ms_p50": bench["measured_ms"], "mode": mode}
    row.pop("measured_ms", None)
    return row


def _dig(data: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def row_from_summary(summary: dict[str, Any], point: BenchPoint, spec: SweepSpec) -> Row:
    """A ``harness run`` summary in the sweep's columns; concurrency and binding come from the model."""
    nominal = predict(point.model_input(point.db_latency_ms + 1.0, 0.0, spec.max_connections, 3))
    model_ms = _dig(summary, "cleanup.model_ms.p50")
    return {
        **knobs(point), "mode": "run", "skipped": False, "note": "",
        "measured_ms_p50": _dig(summary, "cleanup.total_ms.p50"),
        "measured_ms_p95": _dig(summary, "cleanup.total_ms.p95"),
        "model_ms": model_ms if model_ms is not None else nominal.model_ms,
        "model_ratio": _dig(summary, "cleanup.model_ratio.p50"), "c_eff": nominal.c_eff,
        "binding": _dig(summary, "cleanup.binding") or nominal.binding,
        "pool_exhausted_fraction": _dig(summary, "pool.exhausted_fraction"),
        "waiters_peak": _dig(summary, "pool.waiters_peak"), "wait_ms_p95": _dig(summary, "pool.wait_ms.p95"),
        "pool_timeouts": _dig(summary, "pool.timeouts") or 0,
        "errors": _dig(summary, "cleanup.refresh_errors") or 0,
    }


def bench_measure(db_url: str, spec: SweepSpec) -> Measure:
    """Measure a point with the bench (in-process, or in the registry's environment's interpreter)."""
    pythons = registry_pythons(spec.registry, spec.contextforge_version, spec.contextforge_source)

    def measure_one(point: BenchPoint) -> Row:
        bench = measure(point, db_url, spec.repeats, pythons)
        return row_from_bench(bench.as_dict(), point, "bench")

    return measure_one


def run_measure(db_url: str, spec: SweepSpec) -> Measure:
    """Measure a point with Locust through ``harness run``, in ``DIR/runs/<n>``."""
    from harness import cli

    counter = iter(range(1, 1_000_000))

    def measure(point: BenchPoint) -> Row:
        point_dir = spec.out / "runs" / f"{next(counter):03d}-{point.strategy}-{point.driver}-n{point.sessions}"
        argv = ["run", "--out", str(point_dir), "--db-url", db_url, "--registry", point.registry,
                "--max-concurrent", str(point.max_concurrent),
                "--pool-size", str(point.pool_size), "--max-overflow", str(point.max_overflow),
                "--pool-timeout", str(point.pool_timeout),
                "--db-latency-ms", f"{point.db_latency_ms:g}", "--db-jitter-ms", f"{point.db_jitter_ms:g}",
                "--users", str(spec.users or point.sessions), "--run-time", spec.run_time,
                "--cleanup-interval", f"{spec.cleanup_interval:g}", "--no-progress"]
        if point.registry == "contextforge":
            argv += ["--contextforge-version", spec.contextforge_version]
            if spec.contextforge_source is not None:
                argv += ["--contextforge-source", str(spec.contextforge_source)]
        else:
            argv += ["--strategy", point.strategy, "--driver", point.driver, "--batch-size", str(point.batch_size)]
        if point.driver == "thread":
            argv += ["--executor-threads", str(point.executor_threads)]
        code = cli.main(argv)
        summary_file = point_dir / "summary.json"
        if code != 0 or not summary_file.exists():
            raise RuntimeError(f"harness run exited {code} for {point_dir.name}")
        return row_from_summary(json.loads(summary_file.read_text(encoding="utf-8")), point, spec)

    return measure


def _skipped(point: BenchPoint, spec: SweepSpec, note: str) -> Row:
    nominal = nominal_model_ms(point, spec.max_connections)
    return row_from_bench(skipped_row(point, nominal, note).as_dict(), point, spec.mode)


class PointStore:
    """``DIR/points.jsonl``: one finished point per line, written and synced as soon as it is measured."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Row]:
        """Finished points by key; a line cut short by a kill is ignored."""
        finished: dict[str, Row] = {}
        if not self.path.exists():
            return finished
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
                finished[entry["key"]] = entry["row"]
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
        return finished

    def append(self, key: str, row: Row) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"key": key, "row": row}) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def run_grid(points: Sequence[BenchPoint], spec: SweepSpec, measure_factory: Callable[[], Measure],
             progress: Callable[[BenchPoint, float, str], None] | None = None) -> list[Row]:
    """Every point's row in grid order: finished ones from the store, skipped ones noted, others measured.

    ``progress(point, estimated seconds done, status)`` hears "measuring" before a measurement and
    "measured", "reused", "skipped" or "failed" after each point.

    ``measure_factory`` is called only when some point needs measuring (it may start Postgres).
    A point that fails to measure is reported as skipped with the reason and measured again next time.
    """
    store = PointStore(spec.out / POINTS_FILE)
    finished = store.load()
    measure: Measure | None = None
    rows: list[Row] = []
    for point in points:
        key = point_key(point, spec)
        note = skip_note(point, spec)
        if key in finished:
            rows.append(finished[key])
            status = "reused"
        elif note is not None:
            rows.append(_skipped(point, spec, note))
            status = "skipped"
        else:
            measure = measure or measure_factory()
            if progress is not None:
                progress(point, 0.0, "measuring")
            try:
                row = measure(point)
            except RuntimeError as exc:
                rows.append(_skipped(point, spec, f"failed: {exc}"))
                status = "failed"
            else:
                store.append(key, row)
                rows.append(row)
                status = "measured"
        if progress is not None:
            progress(point, 0.0 if status != "measured" else estimated_seconds(point, spec), status)
    return rows


# --- outputs ----------------------------------------------------------------------------------------
def write_csv(path: Path, rows: Sequence[Row]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in COLUMNS})


def extrapolation_counts(spec: SweepSpec, rows: Sequence[Row]) -> list[int]:
    if spec.extrapolate_sessions:
        return list(spec.extrapolate_sessions)
    return [10 * max(int(r["sessions"]) for r in rows)] if rows else []


Answers = dict[str, list[Recommendation]]


def write_outputs(spec: SweepSpec, rows: Sequence[Row], answers: Answers) -> None:
    """``sweep.csv``, ``sweep.json`` and ``report.html`` (with its plots) in ``spec.out``.

    ``answers`` maps ``"any"`` (the overall recommendation) and each strategy to its answers.
    """
    from harness.report.sweep_report import write_report
    from harness.scenario.manifest import build_manifest

    spec.out.mkdir(parents=True, exist_ok=True)
    write_csv(spec.out / "sweep.csv", rows)
    plan = {k: (str(v) if isinstance(v, Path) else v) for k, v in spec.values.items() if k not in ("db_url",)}
    manifest = build_manifest()
    manifest["versions"].update(registry_package_versions(
        registry_pythons(spec.registry, spec.contextforge_version, spec.contextforge_source),
        spec.contextforge_version, spec.contextforge_source))
    payload = {"manifest": manifest, "plan": plan, "rows": list(rows),
               "recommendations": [a.as_dict() for a in answers.get("any", [])],
               "recommendations_by_strategy": {k: [a.as_dict() for a in v] for k, v in answers.items() if k != "any"}}
    (spec.out / "sweep.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    write_report(spec.out, rows, answers, spec.target)


def recommendations(spec: SweepSpec, rows: Sequence[Row]) -> Answers:
    """The overall answers (``"any"``) and each strategy's own, or nothing without a target."""
    target = spec.target
    if target is None:
        return {}
    counts = extrapolation_counts(spec, rows)
    return {"any": recommend(rows, target, counts), **recommend_per_strategy(rows, target, counts)}


def print_recommendations(answers: Answers, target: Target) -> None:
    from rich.console import Console
    from rich.table import Table

    from harness.report.sweep_report import answer_grid

    headers, lines = answer_grid(answers)
    table = Table(title=f"smallest settings for cycle p95 ≤ {target.cycle_ms:g} ms, "
                        f"{target.gateway_workers} worker(s) × (pool + overflow) ≤ {target.max_db_connections} "
                        "(* extrapolated with the model)")
    for col in headers:
        table.add_column(col)
    for line in lines:
        table.add_row(*line)
    Console(width=200).print(table)


# --- the sub-command --------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m harness sweep`` (every one can come from ``--plan``)."""
    parser.add_argument("--plan", type=Path, default=None, help="read the options from this TOML file")
    for option in OPTIONS:
        default = option.default
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        suffix = " (comma list)" if option.section == "grid" else ""
        parser.add_argument(option.flag, dest=option.name, type=option.convert, default=None,
                            metavar="LIST" if option.section == "grid" else None,
                            help=f"{option.help}{suffix}" + (f" (default {shown})" if shown is not None else ""))


def _progress_bar() -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]sweep[/bold] {task.fields[done]}/{task.fields[count]} points"), BarColumn(),
                    TextColumn("{task.description}"), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), console=Console(stderr=True))


def run(args: argparse.Namespace) -> int:
    """Run (or continue) the sweep, then write the table, the report and the recommendation."""
    from harness.sut.postgres import provider_for

    spec = resolve(args)
    points = grid_points(spec)
    registry_pythons(spec.registry, spec.contextforge_version, spec.contextforge_source)  # missing env: exit 2
    finished = PointStore(spec.out / POINTS_FILE).load()
    todo = [p for p in points if point_key(p, spec) not in finished and skip_note(p, spec) is None]
    total = sum(estimated_seconds(p, spec) for p in todo)
    print(f"sweep: {len(points)} points, {len(points) - len(todo)} finished or skipped, {len(todo)} to measure "
          f"(≈ {total / 60:.1f} min) → {spec.out}")
    provider = None
    interrupted = False
    with _progress_bar() as bar:
        task = bar.add_task("", total=max(total, 1e-9), done=0, count=len(points))

        def advance(point: BenchPoint, cost: float, status: str) -> None:
            done = bar.tasks[0].fields["done"] + (status != "measuring")
            bar.update(task, advance=cost, done=done,
                       description=f"{status} {point.strategy}/{point.driver} N={point.sessions}")

        def factory() -> Measure:
            nonlocal provider
            provider = provider_for(spec.db, spec.db_url, max_connections=spec.max_connections)
            url = provider.start()
            return bench_measure(url, spec) if spec.mode == "bench" else run_measure(url, spec)

        try:
            rows = run_grid(points, spec, factory, advance)
        except KeyboardInterrupt:
            interrupted = True
            loaded = PointStore(spec.out / POINTS_FILE).load()
            rows = [loaded[k] for k in (point_key(p, spec) for p in points) if k in loaded]
        finally:
            if provider is not None:
                provider.stop()
    answers = recommendations(spec, rows)
    write_outputs(spec, rows, answers)
    if spec.target is not None:
        print_recommendations(answers, spec.target)
    print(f"wrote {spec.out / 'sweep.csv'}, {spec.out / 'sweep.json'}, {spec.out / 'report.html'}")
    if interrupted:
        print(f"sweep: interrupted; {len(rows)} finished points kept. Re-run the same command to continue.")
        return 130
    return 0
