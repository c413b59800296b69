"""Database faults beside a load: parse ``--fault`` specs, run them on a timeline, apply them, summarize them.

Specs (T, D and DOWN are seconds after the load starts: ``5``, ``5s``, ``1m``):

- ``kill-backends@T``: ``pg_terminate_backend`` on every gateway connection (application_name
  ``mcp-gateway-sim…``); the pools meet dead connections at their next use.
- ``restart-db@T[:DOWN]``: stop Postgres at T (``pg_ctl stop -m fast``), start it again DOWN s later
  (default 3) on the same port (``--db docker``: docker stop/start of the same container). Only a server the
  harness started: ``harness run`` does it in-process, a running ``harness up`` does it when asked through its
  control directory (see :class:`RestartControl`).
- ``error-rate=P[@T:D]``: a fraction P of refresh statements raise inside Postgres (the knobs table read by
  the refresh trigger); without ``@T:D`` for the whole load.
- ``statement-timeout=MS[@T:D]``: a refresh whose injected delay reaches MS sleeps MS and is then cancelled
  with SQLSTATE 57014 (query_canceled), as ``statement_timeout`` would; a knob read by the refresh trigger,
  so it applies live, to refreshes only, with no reconnect.
- ``pool-exhaust@T:D``: every gateway checks all its pooled connections out and holds them idle for D s
  (``POST /admin/hold-connections``), so cleanup waits for the pool and, past ``--pool-timeout``, times out.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text

from gateway_sim import store as st
from harness.errors import UsageError
from harness.scenario.collect import GATEWAY_APP_PREFIX
from harness.sut.dbsync import sync_session

log = logging.getLogger(__name__)

KINDS = ("kill-backends", "restart-db", "error-rate", "statement-timeout", "pool-exhaust")
DEFAULT_DOWN_SECONDS = 3.0
RESTART_TIMEOUT = 120.0
Mark = Callable[..., None]


@dataclass(frozen=True)
class FaultSpec:
    """One parsed fault: what, when (``at`` s after the load starts) and for how long (``duration``).

    ``duration`` is 0 for an instant fault (kill-backends) and None for "until the load ends".
    """

    text: str
    kind: str
    at: float = 0.0
    duration: float | None = 0.0
    value: float | None = None

    @property
    def end(self) -> float | None:
        """Seconds after the load starts when the fault clears (None: when the load ends)."""
        return None if self.duration is None else self.at + self.duration


def _seconds(raw: str, what: str, *, positive: bool) -> float:
    value = raw.strip().lower()
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    try:
        seconds = float(value[:-1]) * units[value[-1]] if value and value[-1] in units else float(value)
    except ValueError:
        raise ValueError(f"{what} {raw!r} is not a time like 5, 5s or 1m") from None
    if seconds != seconds or seconds in (float("inf"), float("-inf")) or seconds < 0 or (positive and seconds == 0):
        raise ValueError(f"{what} {raw!r} must be {'> 0' if positive else '>= 0'}")
    return seconds


def _window(raw: str, *, down_default: float | None = None) -> tuple[float, float]:
    at_text, colon, length = raw.partition(":")
    at = _seconds(at_text, "time", positive=False)
    if not colon:
        if down_default is None:
            raise ValueError("needs a window T:D (start and duration)")
        return at, down_default
    return at, _seconds(length, "duration", positive=True)


def parse_fault(spec: str) -> FaultSpec:
    """Parse one spec; ``ValueError`` naming the spec when it is malformed."""
    text_ = spec.strip()
    try:
        head, at_sign, when = text_.partition("@")
        kind, eq, raw_value = head.partition("=")
        if kind not in KINDS:
            raise ValueError(f"unknown fault {kind!r} (one of {', '.join(KINDS)})")
        if kind in ("error-rate", "statement-timeout"):
            if not eq:
                raise ValueError(f"needs a value: {kind}={'P' if kind == 'error-rate' else 'MS'}[@T:D]")
            try:
                value = float(raw_value)
            except ValueError:
                raise ValueError(f"value {raw_value!r} is not a number") from None
            if kind == "error-rate" and not 0 <= value <= 1:
                raise ValueError(f"error rate {raw_value} must be between 0 and 1")
            if kind == "statement-timeout" and not 0 < value < float("inf"):
                raise ValueError(f"statement timeout {raw_value} must be > 0 ms")
            if not at_sign:
                return FaultSpec(text_, kind, 0.0, None, value)
            at, duration = _window(when)
            return FaultSpec(text_, kind, at, duration, value)
        if eq:
            raise ValueError(f"{kind} takes no value")
        if not at_sign:
            raise ValueError(f"needs a time: {kind}@T")
        if kind == "kill-backends":
            return FaultSpec(text_, kind, _seconds(when, "time", positive=False), 0.0)
        if kind == "restart-db":
            at, down = _window(when, down_default=DEFAULT_DOWN_SECONDS)
            return FaultSpec(text_, kind, at, down)
        at, duration = _window(when)
        return FaultSpec(text_, kind, at, duration)
    except ValueError as exc:
        raise ValueError(f"bad fault spec {spec!r}: {exc}") from None


def fault_spec(spec: str) -> FaultSpec:
    """``argparse`` type for ``--fault``: a one-line error naming the spec."""
    try:
        return parse_fault(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def check_fits(specs: list[FaultSpec], run_time: float, restart_supported: bool, db_name: str) -> None:
    """Reject faults the run cannot carry out: past the load's end, or a restart the provider cannot do."""
    for spec in specs:
        end = spec.end if spec.end is not None else spec.at
        if end >= run_time:
            raise UsageError(f"fault {spec.text!r} ends at {end:g} s, after the load ({run_time:g} s)")
        if spec.kind == "restart-db" and not restart_supported:
            raise UsageError(f"fault {spec.text!r} needs a Postgres the harness starts, --db embedded or docker "
                             f"(this stack uses {db_name})")


# --- applying faults ---------------------------------------------------------------------------------
def terminate_backends(db_url: str) -> int:
    """``pg_terminate_backend`` on every gateway connection; how many were terminated."""
    with sync_session(db_url, application_name="mcp-loadtest-faults") as session:
        count = session.execute(
            text("SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                 " WHERE application_name LIKE :prefix AND pid <> pg_backend_pid()"),
            {"prefix": f"{GATEWAY_APP_PREFIX}%"},
        ).scalar_one()
        session.commit()
    return int(count)


def set_knobs(db_url: str, *, error_rate: float | None = None, statement_timeout_ms: float | None = None) -> None:
    """Set the refresh trigger's error rate and/or statement timeout (None leaves one as it is)."""
    with sync_session(db_url, application_name="mcp-loadtest-faults") as session:
        st.set_fault_knobs(session, error_rate=error_rate, statement_timeout_ms=statement_timeout_ms)


def hold_pools(gateway_urls: list[str], seconds: float) -> list[int]:
    """Ask every gateway to hold all its pooled connections for ``seconds``; the counts held."""
    counts = []
    for url in gateway_urls:
        request = urllib.request.Request(f"{url}/admin/hold-connections", method="POST",
                                         data=json.dumps({"seconds": seconds}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            counts.append(int(json.load(response)["holding"]))
    return counts


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

    A ``harness run`` extension (``start``/``stop``/``results``); ``harness fault`` drives it directly.
    """

    specs: list[FaultSpec]
    failures: list[str] = field(default_factory=list)
    _cancel: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    # -- harness run's extension interface ---------------------------------------------------------
    def start(self, stack: Any, collector: Any) -> None:
        """Start the timeline now (the load starts now)."""
        provider = getattr(stack, "provider", None)
        supported = provider is not None and getattr(provider, "supports_restart", False)
        target = FaultTarget(stack.db_url, list(stack.gateway_urls),
                             restart=local_restart(provider) if supported else None)
        self.begin(target, collector.mark)

    def stop(self) -> None:
        """Cancel pending faults, clear active ones, and wait for the threads."""
        self._cancel.set()
        for thread in self._threads:
            thread.join(timeout=RESTART_TIMEOUT)

    def results(self, summary: dict[str, Any], data: Any) -> list[str]:
        """Add ``summary["faults"]`` (one entry per spec, with its window and what cleanup did in it)."""
        summary["faults"] = fault_summary(self.specs, data.events, data.cycles, data.started_at)
        if self.failures:
            summary.setdefault("warnings", []).extend(self.failures)
        return [faults_table(summary["faults"])] if self.specs else []

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


# --- what the results say about each fault ------------------------------------------------------------
def _cycle_span(cycle: dict[str, Any], started_at: float) -> tuple[float, float]:
    start = datetime.fromisoformat(str(cycle["started_at"])).timestamp() - started_at
    return start, start + float(cycle["total_ms"]) / 1000.0


def fault_summary(specs: list[FaultSpec], events: list[dict[str, Any]], cycles: list[dict[str, Any]],
                  started_at: float) -> list[dict[str, Any]]:
    """Per fault: its window (collector time), the cycles it touched and what they did, and recovery.

    The window runs from the fault's start to its end; an instant kill reaches as far as the first cycle
    of each worker that starts after it (that cycle meets the dead connections). "Recovered" means the
    first cycle of every worker that starts after the window, and overlaps no other fault's window,
    completed with 0 refresh errors and no error.
    """
    out = []
    windows: dict[str, tuple[float, float]] = {}
    spans = [(_cycle_span(c, started_at), c) for c in cycles]
    for spec in specs:
        mine = [e for e in events if e.get("kind") == "fault" and e.get("fault") == spec.text]
        start = next((e for e in mine if e["phase"] == "start"), None)
        end = next((e for e in mine if e["phase"] == "end"), None)
        failed = next((e for e in mine if e["phase"] == "failed"), None)
        entry: dict[str, Any] = {"spec": spec.text, "kind": spec.kind, "value": spec.value,
                                 "start_t": start["t"] if start else None, "end_t": None, "applied": bool(start),
                                 "error": failed.get("error") if failed else None}
        if start is None:
            out.append(entry)
            continue
        a = float(start["t"])
        b = float(end["t"]) if end else a
        if spec.kind == "kill-backends":
            for worker in {c["worker"] for c in cycles}:
                first = min((s for s, c in spans if c["worker"] == worker and s[0] >= a), default=None)
                if first is not None:
                    b = max(b, first[1])
        windows[spec.text] = (a, b)
        during = [c for (s, e), c in spans if s <= b and e >= a]
        out.append(entry | {"_during": during, "_b": b, "_start": start})
    for entry in out:
        if "_b" not in entry:
            continue
        b, during, start = entry.pop("_b"), entry.pop("_during"), entry.pop("_start")
        others = [w for text, w in windows.items() if text != entry["spec"]]
        after: dict[str, dict[str, Any]] = {}
        for (s, e), c in sorted(spans, key=lambda x: x[0][0]):
            overlaps_other = any(s <= ob and e >= oa for oa, ob in others)
            if s > b and c["worker"] not in after and not overlaps_other:
                after[c["worker"]] = c
        entry.update({
            "end_t": round(b, 3),
            "detail": {k: v for k, v in start.items() if k not in ("t", "kind", "fault", "phase", "label")},
            "cycles_during": len(during),
            "refresh_errors_during": sum(int(c["refresh_errors"]) for c in during),
            "cycle_errors_during": sum(1 for c in during if c.get("error")),
            "removed_missing_during": sum(int(c["removed_missing"]) for c in during),
            "recovery_cycles": [{"worker": w, "cycle": c["cycle"], "refresh_errors": c["refresh_errors"],
                                 "error": c.get("error")} for w, c in sorted(after.items())],
            "recovered": bool(after) and all(int(c["refresh_errors"]) == 0 and not c.get("error")
                                             for c in after.values()),
        })
    return out


def faults_table(entries: list[dict[str, Any]]) -> str:
    """The report's section on faults: window, errors counted, sessions removed, recovery."""
    head = ("fault", "start s", "end s", "cycles", "refresh errors", "cycle errors", "removed (missing)", "recovered")
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
            e["spec"], e["start_t"], e["end_t"], e.get("cycles_during"), e.get("refresh_errors_during"),
            e.get("cycle_errors_during"), e.get("removed_missing_during"), e.get("recovered", e.get("error"))))
        + "</tr>" for e in entries)
    header = "".join(f"<th>{h}</th>" for h in head)
    return f"<h2>Faults</h2><table><tr>{header}</tr>{rows}</table>"
