"""Applying database faults: terminate backends, restart Postgres, set the trigger's knobs, hold the pools;
and :class:`FaultScheduler`, which runs the specs of ``--fault`` on a timeline (a run extension).

The grammar is in :mod:`harness.faults.spec`, the results in :mod:`harness.faults.summary`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text

from gateway_sim import store as st
from gateway_sim.admin_client import AdminClient
from gateway_sim.settings import APPLICATION_PREFIX
from harness.errors import UsageError
from harness.faults.spec import FaultSpec
from harness.sut.dbsync import sync_session

log = logging.getLogger(__name__)

RESTART_TIMEOUT = 120.0
Mark = Callable[..., None]

# --- applying faults ---------------------------------------------------------------------------------
def terminate_backends(db_url: str) -> int:
    """``pg_terminate_backend`` on every gateway connection; how many were terminated."""
    with sync_session(db_url, application_name="mcp-loadtest-faults") as session:
        count = session.execute(
            text("SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                 " WHERE application_name LIKE :prefix AND pid <> pg_backend_pid()"),
            {"prefix": f"{APPLICATION_PREFIX}%"},
        ).scalar_one()
        session.commit()
    return int(count)


def set_knobs(db_url: str, *, error_rate: float | None = None, statement_timeout_ms: float | None = None) -> None:
    """Set the refresh trigger's error rate and/or statement timeout (None leaves one as it is)."""
    with sync_session(db_url, application_name="mcp-loadtest-faults") as session:
        st.set_fault_knobs(session, error_rate=error_rate, statement_timeout_ms=statement_timeout_ms)


def hold_pools(gateway_urls: list[str], seconds: float) -> list[int]:
    """Ask every gateway to hold all its pooled connections for ``seconds``; the counts held."""
    return [int(AdminClient(url).hold_connections(seconds)["holding"]) for url in gateway_urls]


Restart = Callable[[float, Callable[[], None], threading.Event], None]
"""``restart(down, on_stopped, cancel)``: stop Postgres, call ``on_stopped``, wait ``down`` s, start it."""


def local_restart(provider: Any) -> Restart:
    """A restart done in this process through the provider's ``stop_server``/``start_server``."""

    def restart(down: float, on_stopped: Callable[[], None], cancel: threading.Event) -> None:
        provider.stop_server()
        try:
            on_stopped()
            cancel.wait(down)
        finally:
            provider.start_server()

    return restart


class RestartControl:
    """Restart requests from ``harness fault`` to ``harness up``, which alone holds the server (``pg_ctl`` and the
    data dir, or the container).

    The requester writes ``restart-request.json`` (``{"id", "down"}``) into the control directory named in
    up's state file; up's main loop (every 0.5 s) takes it, stops Postgres, waits ``down`` s, starts it, and
    reports each step in ``restart-status.json`` (``{"id", "state": stopped|started|failed, …}``).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.request_path = self.directory / "restart-request.json"
        self.status_path = self.directory / "restart-status.json"

    @classmethod
    def create(cls) -> RestartControl:
        """A new control directory (readable by the same user only)."""
        return cls(Path(tempfile.mkdtemp(prefix="mcp-loadtest-control-")))

    def state(self) -> dict[str, Any]:
        """What to add to up's state file."""
        return {"control_dir": str(self.directory)}

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    @staticmethod
    def _write(path: Path, data: dict[str, Any]) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, path)

    # -- harness up's side ---------------------------------------------------------------------------
    def serve_once(self, provider: Any, cancel: threading.Event) -> None:
        """Carry out a pending request, if any (blocks for the restart)."""
        try:
            request = json.loads(self.request_path.read_text(encoding="utf-8"))
            self.request_path.unlink()
            request_id, down = str(request["id"]), float(request["down"])
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.request_path.unlink(missing_ok=True)
            self._write(self.status_path, {"id": None, "state": "failed", "error": f"bad request: {exc}"})
            return

        def stopped() -> None:
            self._write(self.status_path, {"id": request_id, "state": "stopped", "t": time.time()})
            print(f"database stopped for {down:g} s (restart-db)", flush=True)

        try:
            local_restart(provider)(down, stopped, cancel)
        except Exception as exc:
            self._write(self.status_path, {"id": request_id, "state": "failed", "error": str(exc)})
            return
        self._write(self.status_path, {"id": request_id, "state": "started", "t": time.time()})
        print("database started again (restart-db)", flush=True)

    # -- harness fault's side -----------------------------------------------------------------------
    def restart(self, down: float, on_stopped: Callable[[], None], cancel: threading.Event) -> None:
        """A :data:`Restart` carried out by harness up."""
        request_id = uuid.uuid4().hex
        self._write(self.request_path, {"id": request_id, "down": down})
        self._wait(request_id, "stopped", RESTART_TIMEOUT)
        on_stopped()
        self._wait(request_id, "started", down + RESTART_TIMEOUT)

    def _wait(self, request_id: str, state: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                status = json.loads(self.status_path.read_text(encoding="utf-8"))
                if status.get("state") == "failed" and status.get("id") in (request_id, None):
                    raise RuntimeError(f"harness up could not restart the database: {status.get('error')}")
                reached = ("stopped", "started") if state == "stopped" else (state,)
                if status.get("id") == request_id and status.get("state") in reached:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"harness up did not report the database {state} within {timeout:g} s "
                           "(is it still running?)")


@dataclass
class FaultTarget:
    """Where faults land: the database (admin connection), the gateways, and how to restart Postgres."""

    db_url: str
    gateway_urls: list[str]
    restart: Restart | None = None
    restart_unavailable: str = "this stack cannot restart its database"


# --- the timeline ------------------------------------------------------------------------------------
@dataclass
class FaultScheduler:
    """Runs each spec in its own thread: wait until its time, apply, wait its window, clear.

    A run extension (:meth:`attach`); ``harness fault`` drives it directly.
    """

    specs: list[FaultSpec]
    failures: list[str] = field(default_factory=list)
    _cancel: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    # -- as a run extension --------------------------------------------------------------------------
    def attach(self, run: Any) -> None:
        """Hook into a run's events: the timeline starts with the load, stops with it, and the results get a
        ``faults`` section (one entry per spec, with its window and what cleanup did in it)."""
        run.events.load_start.add_listener(self._on_load_start)
        run.events.load_stop.add_listener(lambda run: self.stop())
        run.events.results.add_listener(self._on_results)

    def _on_load_start(self, run: Any) -> None:
        provider = getattr(run.stack, "provider", None)
        supported = provider is not None and getattr(provider, "supports_restart", False)
        target = FaultTarget(run.stack.db_url, list(run.stack.gateway_urls),
                             restart=local_restart(provider) if supported else None)
        self.begin(target, run.collector.mark)

    def _on_results(self, run: Any, data: Any, summary: Any, contribute: Any) -> None:
        from harness.faults.summary import fault_summary
        from harness.report.faults_section import faults_table

        faults = fault_summary(self.specs, data.events, data.cycles, data.started_at)
        contribute.section("faults", faults, faults_table([f.to_json() for f in faults]) if self.specs else None)
        contribute.warnings.extend(self.failures)

    def stop(self) -> None:
        """Cancel pending faults, clear active ones, and wait for the threads."""
        self._cancel.set()
        for thread in self._threads:
            thread.join(timeout=RESTART_TIMEOUT)

    # -- the timeline itself ------------------------------------------------------------------------
    def begin(self, target: FaultTarget, mark: Mark) -> None:
        """Start one thread per spec; times count from now."""
        t0 = time.monotonic()
        for spec in self.specs:
            thread = threading.Thread(target=self._run_spec, args=(spec, target, mark, t0),
                                      name=f"fault {spec.text}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def running(self) -> bool:
        """Whether any spec is still waiting, active or clearing."""
        return any(thread.is_alive() for thread in self._threads)

    def wait(self) -> None:
        """Block until every spec has run its course (or was cancelled)."""
        while self.running():
            time.sleep(0.1)

    def _run_spec(self, spec: FaultSpec, target: FaultTarget, mark: Mark, t0: float) -> None:
        if self._cancel.wait(max(0.0, t0 + spec.at - time.monotonic())):
            return
        try:
            self._apply(spec, target, mark, t0)
        except Exception as exc:  # a fault that cannot be applied is reported, the run goes on
            message = f"fault {spec.text} failed: {exc}"
            log.warning(message)
            self.failures.append(message)
            mark("fault", fault=spec.text, phase="failed", error=str(exc), label=f"{spec.text} failed")

    def _wait_window(self, spec: FaultSpec, t0: float) -> None:
        if spec.end is None:
            self._cancel.wait()
        else:
            self._cancel.wait(max(0.0, t0 + spec.end - time.monotonic()))

    def _apply(self, spec: FaultSpec, target: FaultTarget, mark: Mark, t0: float) -> None:
        def started(**detail: Any) -> None:
            mark("fault", fault=spec.text, phase="start", label=spec.text, **detail)

        def ended() -> None:
            mark("fault", fault=spec.text, phase="end", label=f"{spec.text} end")

        if spec.kind == "kill-backends":
            started(terminated=terminate_backends(target.db_url))
        elif spec.kind == "restart-db":
            if target.restart is None:
                raise UsageError(target.restart_unavailable)
            target.restart(spec.duration or 0.0, started, self._cancel)
            ended()
        elif spec.kind == "pool-exhaust":
            started(held=hold_pools(target.gateway_urls, spec.duration or 0.0))
            self._wait_window(spec, t0)  # the gateways release the connections themselves
            ended()
        else:
            knob = "error_rate" if spec.kind == "error-rate" else "statement_timeout_ms"
            set_knobs(target.db_url, **{knob: spec.value})
            started(**{knob: spec.value})
            try:
                self._wait_window(spec, t0)
            finally:
                set_knobs(target.db_url, **{knob: 0.0})
            ended()


