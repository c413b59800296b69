"""Inject database faults into a running ``harness up``: ``python -m harness fault SPEC …``.

Times count from now. Windowed faults (``@T:D``) run in the foreground until they clear (Ctrl-C clears them
early); ``error-rate=P`` / ``statement-timeout=MS`` without a window are set and left in force (``=0`` clears).
``restart-db`` is carried out by ``harness up`` itself (it owns the server, embedded or docker), asked through the
control directory named in its state file. Specs: see ``harness run --help`` (``--fault``).
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.faults.injectors import FaultScheduler, FaultTarget, RestartControl, set_knobs
from harness.faults.spec import FaultSpec, fault_spec
from harness.sut.state import read_state


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m harness fault``."""
    parser.add_argument("specs", nargs="+", type=fault_spec, metavar="SPEC",
                        help="kill-backends@T, restart-db@T[:DOWN], error-rate=P[@T:D], statement-timeout=MS[@T:D], "
                             "pool-exhaust@T:D (T seconds from now)")
    parser.add_argument("--state", type=Path, default=None, help="state file written by 'harness up'")


def target_from_state(state: dict[str, Any]) -> FaultTarget:
    """Where the faults land, from a running ``harness up``'s state file."""
    try:
        db_url, gateway_urls = str(state["db_url"]), [str(u) for u in state["gateway_urls"]]
    except (KeyError, TypeError):
        raise UsageError("the state file lacks db_url/gateway_urls: is it from 'harness up'?") from None
    control = state.get("control_dir")
    return FaultTarget(db_url, gateway_urls, restart=RestartControl(Path(control)).restart if control else None,
                       restart_unavailable="restart-db needs a 'harness up' that started its Postgres "
                                           "(--db embedded or docker)")


def _persistent(spec: FaultSpec) -> bool:
    return spec.end is None


def run(args: argparse.Namespace) -> int:
    """Apply the faults and report each step with its time."""
    specs: list[FaultSpec] = args.specs
    target = target_from_state(read_state(args.state))
    if any(s.kind == "restart-db" for s in specs) and target.restart is None:
        raise UsageError(target.restart_unavailable)
    for spec in filter(_persistent, specs):
        knob = "error_rate" if spec.kind == "error-rate" else "statement_timeout_ms"
        set_knobs(target.db_url, **{knob: spec.value})
        print(f"t=0.00s {spec.text}: {knob}={spec.value:g} (left in force)", flush=True)
    timed = [s for s in specs if not _persistent(s)]
    if not timed:
        return 0
    t0 = time.monotonic()

    def mark(kind: str, **detail: Any) -> None:
        extra = " ".join(f"{k}={v}" for k, v in detail.items() if k not in ("fault", "phase", "label"))
        print(f"t={time.monotonic() - t0:.2f}s {detail.get('fault')} {detail.get('phase')} {extra}".rstrip(),
              flush=True)

    scheduler = FaultScheduler(timed)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        scheduler.begin(target, mark)
        while scheduler.running() and not stop.wait(0.2):
            pass
        scheduler.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 1 if scheduler.failures else 0
