"""One run end to end: the :class:`Run` object owns the stack, the load, the collector and the extensions.

Like Locust's ``Environment``, a run is one object handed around: extensions (faults, soak sampling) hook in
through its named events (:class:`~harness.scenario.events.RunEvents`) and contribute typed sections to the
results; nothing changes the summary after it is built. Results land in the run's output directory.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from gateway_sim.admin_client import AdminClient
from gateway_sim.config import StoreConfig
from gateway_sim.costs import CALIBRATION_APPLICATION
from harness.errors import UsageError
from harness.faults.injectors import FaultScheduler
from harness.files import read_jsonl, write_csv, write_json
from harness.scenario.calibrate import Calibration, UnderLoadCalibration, calibrate
from harness.scenario.collect import Collected, Collector
from harness.scenario.config import RUN_KNOBS, RunConfig
from harness.scenario.events import Contributions, RunEvents
from harness.scenario.locust_proc import LocustProcess, read_stats
from harness.scenario.manifest import build_manifest, package_versions
from harness.scenario.progress import Progress
from harness.scenario.results import LoadSummary, RunSummary
from harness.scenario.summarize import cleanup_summary, cycle_models, cycle_rows, pool_summary, sessions_summary
from harness.sut.dbsync import sync_session
from harness.sut.stack import ExternalGateways, Stack, StackOptions

log = logging.getLogger(__name__)

UNDER_LOAD_JOIN_SECONDS = 90.0
"""How long the end of a run waits for a CPU calibration under load that is still in flight."""


class Extension(Protocol):
    """Something that runs beside the load: it hooks into a run's events."""

    def attach(self, run: Run) -> None:
        """Add listeners to ``run.events``."""


@dataclass(frozen=True)
class RunOutcome:
    """What a finished run hands back: its typed summary and where its files are."""

    summary: RunSummary
    config: RunConfig


class _Interrupt:
    """Turns the first Ctrl-C/SIGTERM into a flag; the run then stops the load and still writes results."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Interrupt:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, lambda *_: self.event.set())
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Run:
    """A run of :class:`RunConfig`: ``execute()`` starts everything, drives the load, stops everything and
    writes the results, whatever happens on the way."""

    def __init__(self, config: RunConfig, extensions: Iterable[Extension] = ()) -> None:
        self.config = config
        self.events = RunEvents()
        self.logs = config.out_dir / "logs"
        self.stack: Stack | ExternalGateways
        if config.external:
            self.stack = ExternalGateways(list(config.gateway_urls), config.knobs["db_url"])
        else:
            self.stack = Stack(StackOptions.from_knobs(config.knobs, gateway_args=tuple(config.gateway_args),
                                                       log_dir=self.logs, session_log_dir=self.logs))
        self.collector: Collector | None = None
        self.locust: LocustProcess | None = None
        self.under_load: UnderLoadCalibration | None = None
        self.warnings: list[str] = []
        for extension in (FaultScheduler(list(config.faults)), *extensions):
            extension.attach(self)

    # -- the run ----------------------------------------------------------------------------------------
    def execute(self) -> RunOutcome:
        """Run the scenario and write its results; returns the typed summary."""
        self.config.out_dir.mkdir(parents=True, exist_ok=True)
        knobs = dict(self.config.knobs)
        drain = float(knobs["drain"])
        stopped = False
        with _Interrupt() as interrupt:
            self.stack.start()
            try:
                reported = self._reported_config()
                calibration = self._calibrate(reported)
                self.collector = Collector(self.stack.gateway_urls, self.stack.db_url)
                self.collector.start()
                self.locust = LocustProcess(self.config.load, self.stack.gateway_urls, self.config.out_dir)
                self.collector.mark("load_start")
                self.events.load_start.fire(run=self)
                self.locust.start()
                self._start_calibration_under_load(reported, calibration)
                self._drive(interrupt)
                if interrupt.event.is_set():
                    self.warnings.append("interrupted: the load was stopped early")
                    drain = min(drain, 3.0)
                self.locust.interrupt()
                self.locust.wait(60)
                self.collector.mark("load_end")
                if self.under_load is not None:
                    self.under_load.stop()
                time.sleep(drain)
                calibration = self._finish_calibration_under_load(calibration)
                stopped = True
                self.events.load_stop.fire(run=self)
                leaked, rows_before_stop = self._leak_check()
                data = self.collector.stop()
                self.collector = None
                for gateway in self.stack.gateways:
                    gateway.stop()
                rows_after_shutdown = self._count_rows() if isinstance(self.stack, Stack) else None
            finally:
                self._stop_load()
                if self.under_load is not None:
                    self.under_load.join(UNDER_LOAD_JOIN_SECONDS)
                if not stopped:
                    self.events.load_stop.fire(run=self)
                if self.collector is not None:
                    self.collector.stop()
                self.stack.stop()
        summary = self._summarize(reported | {"drain": drain}, data, calibration, leaked, rows_before_stop,
                                  rows_after_shutdown, time.time())
        return RunOutcome(summary=summary, config=self.config)

    def _drive(self, interrupt: _Interrupt) -> None:
        assert self.locust is not None and self.collector is not None
        with Progress(enabled=self.config.progress, run_time=self.config.knobs["run_time"]) as progress:
            while self.locust.running() and not interrupt.event.wait(1.0):
                progress.update(self.collector.now(), self.locust.current_users(), self.collector.latest())
                dead = self.stack.dead_gateways()
                if dead:
                    self.warnings.append(f"gateway {', '.join(dead)} exited during the run")
                    break

    def _stop_load(self) -> None:
        if self.locust is not None and self.locust.running():
            self.locust.interrupt()
            self.locust.wait(30)

    # -- pieces -------------------------------------------------------------------------------------------
    def _reported_config(self) -> dict[str, Any]:
        """The run's config; for gateways the harness did not start, the knobs they report themselves."""
        config = self.config.reported()
        if self.config.external:
            url = self.stack.gateway_urls[0]
            try:
                reported = AdminClient(url).config()
            except (OSError, ValueError, KeyError) as exc:
                raise UsageError(f"cannot read {url}/admin/cycles: {exc}") from None
            gateway_keys = [k for k in RUN_KNOBS if k in reported]
            config |= {k: reported.get(k) for k in gateway_keys if k not in ("db_latency_ms", "db_jitter_ms")}
            config |= {"db": "external", "gateway_urls": list(self.stack.gateway_urls)}
        return config

    def _calibrate(self, config: dict[str, Any]) -> Calibration | None:
        """Round trips measured here, then the gateway's own CPU costs measured in the (first) gateway."""
        if not self.stack.db_url:
            return None
        calibration = self._round_trips(config)
        if config.get("registry_name", "sim") != "sim":
            return calibration  # the CPU calibration runs the sim registry's cleanup
        try:
            costs = AdminClient(self.stack.gateway_urls[0]).calibrate()
        except (OSError, ValueError, KeyError) as exc:
            self.warnings.append(f"the gateway's CPU costs could not be calibrated: {exc}")
            return calibration
        return calibration.with_gateway_costs(costs)

    def _round_trips(self, config: dict[str, Any], *, under_load: bool = False) -> Calibration:
        """One refresh and one delete at a time, from here, on the gateway's database path and driver."""
        # contextforge refreshes with a pre-ping on each checkout: the calibrated refresh pays it too
        return calibrate(StoreConfig(db_url=self.stack.gateway_db_url, driver=config["driver"],
                                     executor_threads=config["executor_threads"] or 1,
                                     pool_pre_ping=config.get("registry_name") == "contextforge",
                                     application_name=CALIBRATION_APPLICATION), create_schema=not under_load)

    def _start_calibration_under_load(self, config: dict[str, Any], calibration: Calibration | None) -> None:
        """Repeat the calibration under the load, after the ramp: each time the gateway's CPU costs right after a
        cleanup cycle, then the round trips from here, before the next cycle (when the gateway calibrated)."""
        count = int(self.config.knobs["calibration_bursts"])
        if calibration is None or calibration.cpu_refresh_ms is None or count < 1:
            return
        knobs = self.config.knobs
        client = AdminClient(self.stack.gateway_urls[0])
        wait = float(knobs["cleanup_interval"]) + UNDER_LOAD_JOIN_SECONDS

        def under_load() -> Calibration:
            costs = client.calibrate(timeout=wait, between_cycles=True)
            return self._round_trips(config, under_load=True).with_gateway_costs(costs)

        self.under_load = UnderLoadCalibration(under_load, count=count,
                                               delay=float(knobs["users"]) / float(knobs["spawn_rate"]))
        self.under_load.start()

    def _finish_calibration_under_load(self, calibration: Calibration | None) -> Calibration | None:
        if self.under_load is None or calibration is None:
            return calibration
        taken = self.under_load.join(UNDER_LOAD_JOIN_SECONDS)
        if self.under_load.error:
            self.warnings.append(f"the calibration under load failed: {self.under_load.error}")
        return calibration.with_costs_under_load(taken)

    def _leak_check(self) -> tuple[int | None, int | None]:
        """Rows in mcp_sessions that no gateway holds as a live session, and rows in all."""
        if not self.stack.db_url:
            return None, None
        live: set[str] = set()
        for url in self.stack.gateway_urls:
            live |= AdminClient(url, timeout=30).live_session_ids()
        from gateway_sim.store import all_session_ids

        with sync_session(self.stack.db_url) as session:
            rows = all_session_ids(session)
        return len(rows - live), len(rows)

    def _count_rows(self) -> int | None:
        if not self.stack.db_url:
            return None
        from gateway_sim.store import all_session_ids

        try:
            with sync_session(self.stack.db_url) as session:
                return len(all_session_ids(session))
        except Exception:  # the database may be gone already; the count is then unknown
            log.debug("counting rows after shutdown failed", exc_info=True)
            return None

    def _summarize(self, config: dict[str, Any], data: Collected, calibration: Calibration | None,
                   leaked: int | None, rows_before_stop: int | None, rows_after_shutdown: int | None,
                   run_end: float) -> RunSummary:
        out = self.config.out_dir
        models = cycle_models(data, calibration, config)
        pool = pool_summary(data, config)
        warnings = list(self.warnings)
        if pool.over_max_connections:
            warnings.append(f"{config['gateway_workers']} workers × (pool {config['pool_size']} + overflow "
                            f"{config['max_overflow']}) = {pool.total_connections_limit} connections exceed "
                            f"max_connections {pool.max_connections}")
        summary = RunSummary(
            config=config,
            versions={**package_versions(), **self.config.registry_versions()},
            cleanup=cleanup_summary(data, calibration, models),
            pool=pool,
            sessions=sessions_summary(data, read_jsonl(sorted(self.logs.glob("gateway-sessions-*.jsonl"))),
                                      read_jsonl([out / "client-sessions.jsonl"]), leaked, rows_after_shutdown,
                                      run_end, rows_before_shutdown=rows_before_stop),
            locust=LoadSummary(**read_stats(out / "locust_stats.csv")),
            warnings=warnings,
        )
        contribute = Contributions()
        self.events.results.fire(run=self, data=data, summary=summary, contribute=contribute)
        summary = replace(summary, warnings=[*summary.warnings, *contribute.warnings], **contribute.sections)
        self._write(summary, data, models, contribute.html)
        return summary

    def _write(self, summary: RunSummary, data: Collected, models: list[Any], sections: list[str]) -> None:
        from harness.report.run_report import write_report

        out = self.config.out_dir
        document = summary.to_json()
        write_json(out / "summary.json", document)
        manifest = build_manifest({"config": summary.config})
        manifest["versions"].update(self.config.registry_versions())  # the registry's own package, if not ours
        write_json(out / "manifest.json", manifest)
        write_csv(out / "cycles.csv", cycle_rows(data.cycles, models))
        write_csv(out / "pool.csv", data.pool_samples)
        write_csv(out / "pg_activity.csv", data.pg_samples)
        write_json(out / "events.json", data.events)
        report = write_report(document, data, sections, [m.model_ms for m in models])
        (out / "report.html").write_text(report, encoding="utf-8")
