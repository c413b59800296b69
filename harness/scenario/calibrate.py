"""Calibrate the model's costs: per-statement wall times on the run's own database path and driver (measured
here), and the gateway's own CPU per refresh, check and removal (measured in the gateway, ``/admin/calibrate``)."""

from __future__ import annotations

import asyncio
import secrets
import statistics
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from gateway_sim import store as st
from gateway_sim.config import StoreConfig

CALIBRATION_SAMPLES = 15


@dataclass(frozen=True)
class Calibration:
    """Median cost in ms of one refresh and one row delete, measured one at a time; the gateway's CPU costs
    (``cpu_*``, and the DELETE round trip of a phase-1 removal) when a gateway measured them."""

    refresh_ms: float
    delete_ms: float
    samples: int
    cpu_refresh_ms: float | None = None
    burst_refresh_ms: float | None = None
    cpu_check_ms: float | None = None
    cpu_remove_ms: float | None = None
    remove_delete_ms: float | None = None
    cpu_share: float | None = None
    expiry_ms: float | None = None
    #: How many of the gateway's CPU calibrations were taken under the load (their medians are the ``cpu_*``
    #: costs); 0 when the one taken before the load is used.
    under_load_bursts: int = 0

    def cpu(self) -> dict[str, float]:
        """The model's ``cpu_*`` inputs that were measured."""
        values = {"cpu_refresh_ms": self.cpu_refresh_ms, "burst_refresh_ms": self.burst_refresh_ms,
                  "cpu_check_ms": self.cpu_check_ms, "cpu_remove_ms": self.cpu_remove_ms,
                  "cpu_share": self.cpu_share, "expiry_ms": self.expiry_ms}
        return {k: v for k, v in values.items() if v is not None}

    def with_gateway_costs(self, costs: dict[str, Any]) -> Calibration:
        """This calibration with the costs a gateway's ``/admin/calibrate`` reported."""
        burst, expiry = costs.get("burst_refresh_ms"), costs.get("expiry_ms")
        return replace(self, cpu_refresh_ms=float(costs["cpu_refresh_ms"]),
                       burst_refresh_ms=None if burst is None else float(burst),
                       expiry_ms=None if expiry is None else float(expiry),
                       cpu_check_ms=float(costs["cpu_check_ms"]), cpu_remove_ms=float(costs["cpu_remove_ms"]),
                       remove_delete_ms=float(costs["delete_ms"]), cpu_share=float(costs["cpu_share"]))

    def with_costs_under_load(self, taken: Sequence[Calibration]) -> Calibration:
        """The medians, field by field, of calibrations taken under the load (this one when there are none)."""
        if not taken:
            return self
        values: dict[str, Any] = {}
        for f in fields(self):
            measured = [getattr(c, f.name) for c in taken if getattr(c, f.name) is not None]
            if f.name not in ("samples", "under_load_bursts") and measured:
                values[f.name] = round(statistics.median(measured), 6)
        return replace(self, **values, under_load_bursts=len(taken))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class UnderLoadCalibration:
    """The calibration repeated under the load: after ``delay`` seconds, up to ``count`` times, in a thread.

    ``calibrate`` is expected to wait for a cleanup cycle to end first (``/admin/calibrate`` with
    ``between_cycles``) so no cycle shares the burst. The costs that change under load (the round trips, the
    database's side of a refresh, the cores Locust takes) are then the ones the cycles met. A calibration that
    ends after :meth:`stop` is not counted.
    """

    def __init__(self, calibrate: Callable[[], Calibration], count: int, delay: float) -> None:
        self._calibrate = calibrate
        self._count = count
        self._delay = delay
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._taken: list[Calibration] = []
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="calibration-under-load", daemon=True)

    def start(self) -> None:
        if self._count > 0:
            self._thread.start()

    def _run(self) -> None:
        if self._stopped.wait(self._delay):
            return
        while not self._stopped.is_set() and len(self._taken) < self._count:
            try:
                calibration = self._calibrate()
            except Exception as exc:  # the run goes on with the calibration taken before the load
                self.error = f"{type(exc).__name__}: {exc}"
                return
            with self._lock:
                if not self._stopped.is_set():
                    self._taken.append(calibration)

    def stop(self) -> None:
        """Take no more: one that ends from now on is not counted."""
        with self._lock:
            self._stopped.set()

    def join(self, timeout: float) -> list[Calibration]:
        """Stop, wait up to ``timeout`` s for one still in flight, and return those taken before the stop."""
        self.stop()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._lock:
            return list(self._taken)


async def _median_ms(calls: list[Callable[[], Awaitable[Any]]]) -> float:
    samples = []
    for call in calls:
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(samples)


async def calibrate_store(store: st.SessionStore, samples: int = CALIBRATION_SAMPLES) -> Calibration:
    """Insert ``samples`` throw-away rows, refresh each, delete each; medians of the single calls."""
    ids = [f"calibration-{secrets.token_hex(8)}" for _ in range(samples)]
    await store.run(st.insert_sessions, ids)
    refresh_ms = await _median_ms([lambda i=i: store.refresh(i) for i in ids])
    delete_ms = await _median_ms([lambda i=i: store.run(st.delete_session, i) for i in ids])
    return Calibration(refresh_ms=round(refresh_ms, 3), delete_ms=round(delete_ms, 3), samples=samples)


async def calibrate_registry(registry: Any, samples: int = CALIBRATION_SAMPLES) -> Calibration:
    """Like :func:`calibrate_store`, with the registry's own refresh (``registry.refresh_one``)."""
    store = registry.store
    ids = [f"calibration-{secrets.token_hex(8)}" for _ in range(samples)]
    await store.run(st.insert_sessions, ids)
    refresh_ms = await _median_ms([lambda i=i: registry.refresh_one(i) for i in ids])
    delete_ms = await _median_ms([lambda i=i: store.run(st.delete_session, i) for i in ids])
    return Calibration(refresh_ms=round(refresh_ms, 3), delete_ms=round(delete_ms, 3), samples=samples)


def calibrate(config: StoreConfig, samples: int = CALIBRATION_SAMPLES, *, create_schema: bool = True) -> Calibration:
    """Calibrate with a store of its own (same URL and driver as the gateway); ``create_schema=False`` when the
    tables exist and a load is running (the schema's DDL would lock ``mcp_sessions``)."""

    async def go() -> Calibration:
        store = st.open_store(config)
        try:
            if create_schema:
                await store.run(st.create_schema)
            await store.refresh("warm-up")  # opens the connection: not part of a refresh's cost
            return await calibrate_store(store, samples)
        finally:
            await store.close()

    return asyncio.run(go())
