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
``pool_timeout``, ``db_jitter_ms``, ``db``, ``docker_image``, ``db_url``, ``max_connections``; table ``[grid]``
with ``sessions``, ``max_concurrent``, ``db_latency_ms``, ``pool_size``, ``max_overflow``, ``executor_threads``,
``strategy``, ``driver``, ``batch_size`` (a list or one value each); ``[run]`` with ``run_time``, ``users``;
``[recommend]`` with ``target_cycle_ms``, ``max_db_connections``, ``gateway_workers``,
``extrapolate_sessions``. Relative paths are relative to the current directory.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gateway_sim.settings import Setting, list_type
from harness.capacity.bench import (
    BenchPoint,
    ServerLimits,
    collapse,
    expand,
    measure,
    nominal,
    registry_package_versions,
    registry_pythons,
    sim_only_knobs,
    skipped_row,
)
from harness.capacity.recommend import Recommendation, Target, recommend, recommend_per_strategy
from harness.errors import UsageError
from harness.files import write_csv, write_json
from harness.gate.tomlfile import read_toml
from harness.settings import DEFAULT_RESERVED_CONNECTIONS, GRID_KNOBS, SETTINGS
from harness.sut.gateway_proc import GatewayError
from harness.sut.postgres import ProviderError

MODES = ("bench", "run")
GRID = GRID_KNOBS
COLUMNS = (*GRID, "measured_ms_p50", "measured_ms_p95", "model_ms", "model_ratio", "c_eff", "binding",
           "pool_exhausted_fraction", "waiters_peak", "pool_timeouts", "errors", "refresh_ms", "check_ms",
           "max_inflight", "checked_out_peak", "wait_ms_p95", "executor_queue_peak", "mode", "skipped", "note")
POINTS_FILE = "points.jsonl"
Row = dict[str, Any]
Measure = Callable[[BenchPoint], Row]


@dataclass(frozen=True)
class Option:
    """One sweep option: a row of the settings table, the TOML table it sits in, and whether it is a list."""

    name: str
    section: str = ""
    many: bool = False

    @property
    def row(self) -> Setting:
        return SETTINGS[self.name]

    @property
    def flag(self) -> str:
        return self.row.flag

    @property
    def convert(self) -> Callable[[str], Any]:
        """Parse one flag or plan value: a comma list for list options, else one value, checked."""
        if self.many:
            return list_type(self.row)
        single = list_type(self.row)

        def parse(text: str) -> Any:
            values = single(text)
            if len(values) != 1:
                raise argparse.ArgumentTypeError(f"{text!r}: expected one value")
            return values[0]

        parse.__name__ = single.__name__.removeprefix("list of ")
        return parse


OPTIONS: tuple[Option, ...] = (
    *(Option(name, "grid", many=True) for name in GRID_KNOBS),
    Option("out"), Option("mode"), Option("repeats"), Option("max_point_seconds"), Option("pool_timeout"),
    Option("db_jitter_ms"), Option("db"), Option("docker_image"), Option("db_url"), Option("max_connections"),
    Option("contextforge_version"), Option("contextforge_source"),
    Option("run_time", "run"), Option("cleanup_interval", "run"), Option("users", "run"),
    Option("target_cycle_ms", "recommend"), Option("max_db_connections", "recommend"),
    Option("gateway_workers", "recommend"), Option("extrapolate_sessions", "recommend", many=True),
)
_BY_NAME = {o.name: o for o in OPTIONS}
SWEEP_DEFAULTS: dict[str, Any] = {"sessions": [100, 1000], "db_latency_ms": [20.0], "strategy": None,
                                  "driver": None, "batch_size": None, "registry_name": ["sim"], "db_jitter_ms": 0.0,
                                  "run_time": 30.0, "cleanup_interval": 5.0,
                                  "users": None, "db": "embedded", "db_url": None}
"""Where a sweep's defaults differ from the table's: the grid's own lists, and 30 s Locust runs per point. The
sim-only knobs default to None (not given): refused for a contextforge-only grid, else every strategy, the async
driver and batches of 500."""


def option_default(option: Option) -> Any:
    """The sweep's default for ``option`` (a list for list options)."""
    value = SWEEP_DEFAULTS[option.name] if option.name in SWEEP_DEFAULTS else option.row.default_value()
    return [value] if option.many and value is not None and not isinstance(value, list) else value


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
    def limits(self) -> ServerLimits:
        """The connection budget of the server the sweep starts (its ``--max-connections``)."""
        return ServerLimits(int(self.values["max_connections"]), DEFAULT_RESERVED_CONNECTIONS)

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
    values = {o.name: option_default(o) for o in OPTIONS}
    if args.plan is not None:
        values.update(read_plan(args.plan))
    values.update({o.name: getattr(args, o.name) for o in OPTIONS if getattr(args, o.name) is not None})
    if values["out"] is None:
        raise UsageError("--out DIR is required (or out = \"DIR\" in the plan)")
    if (values["target_cycle_ms"] is None) != (values["max_db_connections"] is None):
        raise UsageError("--target-cycle-ms and --max-db-connections go together")
    values.update(sim_only_knobs(values["registry_name"], {k: values[k] for k in ("strategy", "driver", "batch_size")}))
    spec = SweepSpec(values)
    try:
        spec.target  # noqa: B018 - validates the recommendation's target now, before anything runs
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return spec


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
        "registry_name": point.registry_name, "strategy": point.strategy, "driver": point.driver,
        "sessions": point.sessions,
        "max_concurrent": point.max_concurrent if point.strategy == "bounded" else None,
        "db_latency_ms": point.db_latency_ms, "pool_size": point.pool_size, "max_overflow": point.max_overflow,
        "executor_threads": point.executor_threads if point.driver == "thread" and concurrent else None,
        "batch_size": point.batch_size if point.strategy == "batched" else None,
    }


def point_key(point: BenchPoint, spec: SweepSpec) -> str:
    """What identifies a finished point across re-runs of the same sweep."""
    key = {**knobs(point), "db_jitter_ms": point.db_jitter_ms, "pool_timeout": point.pool_timeout,
           "mode": spec.mode}
    if key["registry_name"] == "sim":
        del key["registry_name"]  # sweeps from before the registry axis resume as they were
    if spec.mode == "run":
        key.update(run_time=spec.run_time, users=spec.users)
    return json.dumps(key, sort_keys=True)


def estimated_seconds(point: BenchPoint, spec: SweepSpec) -> float:
    """A rough wall-clock cost of measuring ``point`` (weights the progress bar's ETA)."""
    if spec.mode == "run":
        return float(spec.run_time) + 15.0
    cycle = nominal(point, spec.limits).model_ms / 1000.0
    return 1.0 + point.sessions * 0.0005 + (spec.repeats + 1) * cycle + 0.015 * point.db_latency_ms


def skip_note(point: BenchPoint, spec: SweepSpec) -> str | None:
    """Why the point is not run, or ``None``."""
    predicted = nominal(point, spec.limits).model_ms
    if predicted > spec.max_point_seconds * 1000.0:
        return f"skipped: model {predicted / 1000:.1f} s > --max-point-seconds {spec.max_point_seconds:g}"
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
    expected = nominal(point, spec.limits)
    model_ms = _dig(summary, "cleanup.model_ms.p50")
    return {
        **knobs(point), "mode": "run", "skipped": False, "note": "",
        "measured_ms_p50": _dig(summary, "cleanup.total_ms.p50"),
        "measured_ms_p95": _dig(summary, "cleanup.total_ms.p95"),
        "model_ms": model_ms if model_ms is not None else expected.model_ms,
        "model_ratio": _dig(summary, "cleanup.model_ratio.p50"), "c_eff": expected.c_eff,
        "binding": _dig(summary, "cleanup.binding") or expected.binding,
        "pool_exhausted_fraction": _dig(summary, "pool.exhausted_fraction"),
        "waiters_peak": _dig(summary, "pool.waiters_peak"), "wait_ms_p95": _dig(summary, "pool.wait_ms.p95"),
        "pool_timeouts": _dig(summary, "pool.timeouts") or 0,
        "errors": _dig(summary, "cleanup.refresh_errors") or 0,
    }


def bench_measure(db_url: str, spec: SweepSpec) -> Measure:
    """Measure a point with the bench (in-process, or in the registry's environment's interpreter)."""
    pythons = registry_pythons(spec.registry_name, spec.contextforge_version, spec.contextforge_source)

    def measure_one(point: BenchPoint) -> Row:
        bench = measure(point, db_url, spec.repeats, pythons)
        return row_from_bench(bench.as_dict(), point, "bench")

    return measure_one


def run_measure(db_url: str, spec: SweepSpec) -> Measure:
    """Measure a point with Locust through a :class:`~harness.scenario.run.Run`, in ``DIR/runs/<n>``."""
    from harness.scenario.config import RunConfig
    from harness.scenario.run import Run

    counter = iter(range(1, 1_000_000))

    def measure(point: BenchPoint) -> Row:
        point_dir = spec.out / "runs" / f"{next(counter):03d}-{point.strategy}-{point.driver}-n{point.sessions}"
        values = {**asdict(point), "db_url": db_url, "users": spec.users or point.sessions,
                  "run_time": spec.run_time, "cleanup_interval": spec.cleanup_interval,
                  "contextforge_version": spec.contextforge_version, "contextforge_source": spec.contextforge_source}
        try:
            config = RunConfig.build(values, out_dir=point_dir, progress=False)
            summary = Run(config).execute().summary
        except (UsageError, ProviderError, GatewayError, OSError) as exc:
            raise RuntimeError(f"the run for {point_dir.name} failed: {exc}") from None
        return row_from_summary(summary.to_json(), point, spec)

    return measure


def _skipped(point: BenchPoint, spec: SweepSpec, note: str) -> Row:
    return row_from_bench(skipped_row(point, nominal(point, spec.limits), note).as_dict(), point, spec.mode)


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
    write_csv(spec.out / "sweep.csv", rows, COLUMNS)
    plan = {k: (str(v) if isinstance(v, Path) else v) for k, v in spec.values.items() if k not in ("db_url",)}
    manifest = build_manifest()
    manifest["versions"].update(registry_package_versions(
        registry_pythons(spec.registry_name, spec.contextforge_version, spec.contextforge_source),
        spec.contextforge_version, spec.contextforge_source))
    payload = {"manifest": manifest, "plan": plan, "rows": list(rows),
               "recommendations": [a.as_dict() for a in answers.get("any", [])],
               "recommendations_by_strategy": {k: [a.as_dict() for a in v] for k, v in answers.items() if k != "any"}}
    write_json(spec.out / "sweep.json", payload)
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
