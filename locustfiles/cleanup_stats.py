"""The gateway's cleanup cycles as live Locust statistics (request type ``CLEANUP``).

A greenlet on the master or local runner (never a worker, so nothing is counted twice) polls each
gateway's ``GET /admin/cycles?since=N`` about once a second and fires one request event per phase of every
new cycle: ``cycle`` (total), ``expiry``, ``phase1``, ``phase2``. Response time is the phase's duration;
response length the sessions it handled. A cycle with refresh errors (or an ``error``) is a failure.
The latest ``pool`` block and ``/admin/db`` of each gateway are kept for the "DB pool" tab.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import gevent
from locust.env import Environment
from locust.runners import STATE_RUNNING, STATE_SPAWNING, WorkerRunner

from gateway_sim.admin_client import AdminClient
from locustfiles.cycle_events import cycle_events
from locustfiles.gateway_view import GatewayView

log = logging.getLogger(__name__)

POLL_INTERVAL = 1.0
DB_EVERY = 5
"""Ask ``/admin/db`` every this many polls: it takes a pool connection of the gateway being measured."""
CYCLES_TIMEOUT = 15.0
"""``/admin/cycles`` answers from memory, but a gateway at full CPU can take seconds."""
DB_TIMEOUT = 3.0


class CyclePoller:
    """Polls gateways' ``/admin/cycles`` and turns new cycles into request events."""

    def __init__(
        self,
        environment: Environment,
        urls: Callable[[], Sequence[str]],
        client: Callable[[str], AdminClient] = lambda url: AdminClient(url, timeout=CYCLES_TIMEOUT),
        interval: float = POLL_INTERVAL,
    ) -> None:
        self.environment = environment
        self.urls = urls
        self.client = client
        self._clients: dict[str, AdminClient] = {}
        self.interval = interval
        self.views: dict[str, GatewayView] = {}
        self._polls = 0
        self.greenlet: gevent.Greenlet | None = None

    def recording(self) -> bool:
        """Events count only while a test runs (stats are cleared when one starts)."""
        runner = self.environment.runner
        return runner is not None and runner.state in (STATE_SPAWNING, STATE_RUNNING)

    def poll_once(self) -> None:
        """One round over all gateways; a gateway that does not answer is noted, not fatal."""
        self._polls += 1
        for url in self.urls():
            view = self.views.setdefault(url, GatewayView(url))
            try:
                self._poll(view)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                if view.error is None:
                    log.warning("cannot poll %s/admin/cycles: %s", url, exc)
                view.error = str(exc) or type(exc).__name__
                continue
            if view.error:
                log.info("gateway %s answers /admin/cycles again", url)
            view.error = None
            if self._polls % DB_EVERY == 1 or not view.db:
                # Needs a connection from the very pool under test: short timeout, and never in the
                # way of the cycle events.
                try:
                    view.db = self._client(url).db(timeout=DB_TIMEOUT)
                    view.db_error = None
                except (OSError, ValueError) as exc:
                    view.db_error = str(exc) or type(exc).__name__

    def _client(self, url: str) -> AdminClient:
        if url not in self._clients:
            self._clients[url] = self.client(url)
        return self._clients[url]

    def _poll(self, view: GatewayView) -> None:
        client = self._client(view.url)
        if view.since is None:
            # First contact: start after the cycles that ran before we looked.
            payload = client.cycles(limit=1)
            view.since = int(payload["cycles_total"])
        else:
            payload = client.cycles(since=view.since)
            if int(payload["cycles_total"]) < view.since:  # the gateway restarted
                view.since = 0
                payload = client.cycles(since=0)
            recording = self.recording()
            for record in payload["cycles"]:
                if recording:
                    for kwargs in cycle_events(record):
                        self.environment.events.request.fire(**kwargs)
                view.since = max(view.since, int(record["cycle"]))
        view.worker = str(payload.get("worker", ""))
        view.pool = payload.get("pool") or {}
        view.sessions = payload.get("sessions") or {}
        if payload["cycles"]:
            view.last_cycle = payload["cycles"][-1]

    def run(self) -> None:
        """Poll forever (the greenlet's body)."""
        while True:
            self.poll_once()
            gevent.sleep(self.interval)


def start(environment: Environment, urls: Callable[[], Sequence[str]]) -> CyclePoller | None:
    """Start polling on the master or local runner; ``None`` on a worker."""
    if environment.runner is None or isinstance(environment.runner, WorkerRunner):
        return None
    poller = CyclePoller(environment, urls)
    poller.greenlet = gevent.spawn(poller.run)

    def stop(**_kw: Any) -> None:
        if poller.greenlet is not None:
            poller.greenlet.kill(block=False)

    environment.events.quitting.add_listener(stop)
    return poller
