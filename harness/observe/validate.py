"""One ground-truth point: the sim gateway holds N SSE sessions under Locust churn, ``observe`` watches its
database, and the inferred cycles are scored against the gateway's own ``/admin/cycles`` records."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from gateway_sim.admin_client import AdminClient
from harness.observe.accuracy import Score, TrueCycle, match, score
from harness.observe.sampler import Sampler
from harness.scenario.locust_proc import LocustOptions, LocustProcess
from harness.sut.stack import Stack, StackOptions


@dataclass(frozen=True)
class Point:
    """What one point runs."""

    sessions: int
    latency_ms: float
    strategy: str
    cycles: int = 6
    cleanup_interval: float = 1.5
    churn_users: int = 20
    driver: str = "async"


class HeldSessions:
    """N open SSE streams in a thread of their own (an asyncio loop), read until :meth:`close`."""

    def __init__(self, url: str, count: int) -> None:
        self.url = url
        self.count = count
        self.opened = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._loop.run_forever, name="held-sse", daemon=True)
        self._task: Any = None
        self._closing: asyncio.Event | None = None

    def open(self, timeout: float = 120.0) -> int:
        """Open the streams; returns how many answered with their endpoint event."""
        self._thread.start()
        self._task = asyncio.run_coroutine_threadsafe(self._hold(), self._loop)
        self._ready.wait(timeout)
        return self.opened

    async def _hold(self) -> None:
        self._closing = asyncio.Event()
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as http:
            sem = asyncio.Semaphore(200)
            streams: list[aiohttp.ClientResponse] = []

            async def one() -> None:
                async with sem:
                    response = await http.get(f"{self.url}/sse")
                    streams.append(response)
                    await response.content.readline()
                    self.opened += 1

            await asyncio.gather(*(one() for _ in range(self.count)), return_exceptions=True)
            self._ready.set()
            await self._closing.wait()
            for response in streams:
                response.close()

    def close(self) -> None:
        """Close every stream and stop the thread."""
        if self._task is not None:
            self._ready.wait(120)
            self._loop.call_soon_threadsafe(self._closing.set)  # type: ignore[union-attr]
            with contextlib.suppress(Exception):
                self._task.result(60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        if not self._thread.is_alive():
            self._loop.close()


def _gateway_args(point: Point) -> tuple[str, ...]:
    return ("--strategy", point.strategy, "--driver", point.driver, "--cleanup-interval", f"{point.cleanup_interval:g}",
            "--session-ttl", "20", "--pool-size", "20", "--max-overflow", "10", "--max-concurrent", "20")


def run_point(point: Point, work_dir: Path | None = None) -> tuple[Score, dict[str, Any]]:
    """Run one point on a fresh embedded Postgres and gateway; stops everything it started."""
    work = Path(work_dir or tempfile.mkdtemp(prefix="observe-point-"))
    stack = Stack(StackOptions(gateway_args=_gateway_args(point), db_latency_ms=point.latency_ms, log_dir=work))
    held: HeldSessions | None = None
    locust: LocustProcess | None = None
    sampler: Sampler | None = None
    thread: threading.Thread | None = None
    try:
        stack.start()
        url = stack.gateway_urls[0]
        held = HeldSessions(url, point.sessions)
        opened = held.open()
        locust = LocustProcess(LocustOptions(users=point.churn_users, spawn_rate=10, run_time_s=3600,
                                             session_lifetime="2-8", calls_per_session=2), [url], work)
        locust.start()
        time.sleep(3.0)  # churn running before the observation starts
        sampler = Sampler(stack.db_url, application_name="mcp-gateway-sim")
        sampler.open()
        thread = threading.Thread(target=sampler.run, name="observe", daemon=True)
        thread.start()
        admin = AdminClient(url)
        first = int(admin.cycles(limit=1)["cycles_total"])
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if int(admin.cycles(limit=1)["cycles_total"]) >= first + point.cycles + 1:
                break
        time.sleep(0.3)
        sampler.stop()
        thread.join(30)
        obs = sampler.observation
        records = admin.cycles(since=first)["cycles"]
    finally:
        if sampler is not None:
            sampler.stop()
        if thread is not None:
            thread.join(30)
        if locust is not None:
            locust.interrupt()
            locust.wait(30)
        if held is not None:
            held.close()
        stack.stop()
    truth = [TrueCycle.from_record(r) for r in records]
    cycles = obs.cycles()
    result = score(truth, cycles, (obs.started_at, obs.ended_at))
    detail = {"opened": opened, "true_ms": [t.total_ms for t in truth],
              "true_before_phase2_ms": [round(float(r["expiry_ms"]) + float(r["phase1_ms"]), 3) for r in records],
              "start_from": dict(Counter(c.start_from for c in cycles)),
              "turnaround_ms": round(obs.turnaround() * 1000.0, 3),
              "pairs": [{"true_ms": t.total_ms, "observed_ms": o.duration_ms, "start_from": o.start_from,
                         "end_from": o.end_from, "start_error_ms": round((o.start - t.start) * 1000.0, 3),
                         "end_error_ms": round((o.end - t.end) * 1000.0, 3)} for t, o in match(truth, cycles)],
              "observed_ms": [c.duration_ms for c in cycles], "poll_hz": len(obs.pg_samples)
              / max(1e-9, obs.ended_at - obs.started_at)}
    return result, detail
