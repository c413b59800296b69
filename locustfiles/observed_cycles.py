"""Cleanup cycles observed from the gateway's database as live Locust statistics (``CLEANUP`` rows).

For a gateway without ``/admin/cycles``: given ``--observe-db-url``, the master (or local runner) starts
``python -m harness.observe.live`` in a process of its own (the sampler is synchronous psycopg, kept out
of gevent) and fires one ``CLEANUP cycle (observed)`` event per line it prints: response time is the
cycle's duration, response length the sessions it refreshed.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from typing import Any

import gevent
from gevent import subprocess as gsubprocess
from locust.env import Environment
from locust.runners import STATE_RUNNING, STATE_SPAWNING, WorkerRunner

from locustfiles.cycle_events import REQUEST_TYPE

log = logging.getLogger(__name__)
NAME = "cycle (observed)"


def cycle_event(line: str) -> dict[str, Any] | None:
    """``events.request.fire`` keyword arguments for one line of the live observer (None if not a cycle)."""
    try:
        record = json.loads(line)
        total = float(record["total_ms"])
    except (ValueError, KeyError, TypeError):
        return None
    return {"request_type": REQUEST_TYPE, "name": NAME, "response_time": total,
            "response_length": int(record.get("refreshed") or 0), "exception": None,
            "context": {"source": "observed", "cycle": record.get("cycle")}}


def start(environment: Environment, db_url: str) -> gevent.Greenlet | None:
    """Start the observer process and its reader greenlet; ``None`` on a worker or without a URL."""
    if not db_url or environment.runner is None or isinstance(environment.runner, WorkerRunner):
        return None
    proc = gsubprocess.Popen([sys.executable, "-m", "harness.observe.live", "--db-url", db_url],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            runner = environment.runner
            kwargs = cycle_event(line)
            if kwargs and runner is not None and runner.state in (STATE_SPAWNING, STATE_RUNNING):
                environment.events.request.fire(**kwargs)
        if proc.wait() not in (0, None):
            log.warning("the database observer exited with %s", proc.returncode)

    greenlet = gevent.spawn(read)

    def stop(**_kw: Any) -> None:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)
        greenlet.kill(block=False)

    environment.events.quitting.add_listener(stop)
    return greenlet
