"""The registry interface: what the gateway app and the bench need of a session registry.

Three implementations ship: ``sim`` (:class:`gateway_sim.registry.SessionRegistry`, this project's own
two-phase bounded-gather cleanup), ``contextforge`` (:mod:`gateway_sim.registries.contextforge`, ContextForge's
own ``SessionRegistry`` hosted as it is) and yours: ``--registry package.module:factory`` imports ``factory``
and calls it with the :class:`~gateway_sim.config.GatewayConfig`; it returns an object with the members below.

Lifecycle: ``await start()`` once before the first request (create tables, open engines), ``await close()``
on shutdown (end every local session and delete their rows), ``await stop()`` last (release engines).
Every cleanup cycle, however it is run, yields a :class:`~gateway_sim.metrics.CycleRecord` that the
implementation adds to ``cycle_log`` (which feeds ``/admin/cycles``, ``/metrics`` and, through them, Locust's
CLEANUP rows, ``summary.json``, the gate and the sweep).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from gateway_sim.config import GatewayConfig
from gateway_sim.metrics import CycleLog, CycleRecord
from gateway_sim.pool_monitor import PoolMonitor
from gateway_sim.settings import validate_registry_name
from gateway_sim.store import SessionStore
from gateway_sim.transports import Transport

log = logging.getLogger(__name__)

SessionListener = Callable[[str, str, str, str], None]
"""Called as ``listener(event, session_id, kind, reason)`` on ``created`` and ``removed``."""


@runtime_checkable
class Registry(Protocol):
    """A session registry the gateway can host."""

    #: cycle records, appended by every cycle
    cycle_log: CycleLog
    #: called on every session created and removed (the harness's session log)
    listeners: list[SessionListener]
    #: gauges of the pool the registry's refreshes use (SQLAlchemy pool events)
    monitor: PoolMonitor
    #: the gateway's own statements (schema, fault knobs, pg_stat_activity) run on this store
    store: SessionStore

    @property
    def sessions(self) -> Mapping[str, Transport]:
        """The sessions this process holds, by id."""

    async def start(self) -> None:
        """Open what the registry needs; called once before the first request."""

    async def close(self) -> None:
        """End every local session and delete their rows (graceful shutdown)."""

    async def stop(self) -> None:
        """Release engines and executors; called last."""

    def get(self, session_id: str) -> Transport | None:
        """The local transport of ``session_id``, if this process holds it."""

    async def add_session(self, transport: Transport, data: str | None = None) -> str:
        """Register a new session and return its id (32 lowercase hex digits)."""

    async def add_sessions(self, transports: Sequence[Transport]) -> list[str]:
        """Register many sessions (benchmarks, warm starts)."""

    async def remove_session(self, session_id: str, reason: str, *, delete_row: bool = True) -> bool:
        """Close the transport and forget the session; False if this process did not hold it."""

    async def touch(self, session_id: str) -> bool:
        """A request arrived on the session; False if the session is gone (its row expired)."""

    async def refresh_one(self, session_id: str) -> bool:
        """One refresh exactly as the cycle's phase 2 does it (calibration); False if no row."""

    async def run_cleanup_cycle(self) -> CycleRecord:
        """Run one cleanup cycle now, add its record to ``cycle_log`` and return it."""

    async def run_forever(self) -> None:
        """Run a cycle every ``config.registry.cleanup_interval`` seconds until cancelled."""

    def accounting(self) -> dict[str, Any]:
        """``created``, ``created_by_transport``, ``removed``, ``removed_by_reason``, ``active``,
        ``active_persistent``: created = removed + active."""

    def describe(self) -> dict[str, Any]:
        """What the registry runs with, for ``/admin/cycles``' ``config``: at least ``registry``, ``strategy``,
        ``driver`` and ``executor_threads``."""

    async def hold_connections(self, count: int, seconds: float) -> int:
        """Check ``count`` connections of the registry's pool out for ``seconds`` (the pool-exhaust fault)."""


RegistryFactory = Callable[[GatewayConfig], Registry]

BUILT_IN: dict[str, str] = {
    "sim": "gateway_sim.registry:create",
    "contextforge": "gateway_sim.registries.contextforge:create",
}


def notify(listeners: Sequence[SessionListener], event: str, session_id: str, kind: str, reason: str) -> None:
    """Tell every listener about a session created or removed; a failing listener is logged, never raised."""
    for listener in listeners:
        try:
            listener(event, session_id, kind, reason)
        except Exception:
            log.exception("session listener failed")


def session_accounting(created: Mapping[str, int], removed: Mapping[str, int],
                       sessions: Mapping[str, Transport]) -> dict[str, Any]:
    """created = removed + active, by transport kind and by removal reason: what ``accounting()`` returns."""
    return {
        "created": sum(created.values()),
        "created_by_transport": dict(created),
        "removed": sum(removed.values()),
        "removed_by_reason": dict(removed),
        "active": len(sessions),
        "active_persistent": sum(1 for t in sessions.values() if t.persistent),
    }


def load_factory(name: str) -> RegistryFactory:
    """The factory ``--registry name`` selects (built-in or ``package.module:factory``)."""
    validate_registry_name(name)
    module_name, _, attr = BUILT_IN.get(name, name).partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"registry {name}: cannot import {module_name}: {exc}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"registry {name}: {module_name} has no callable {attr}")
    return factory  # type: ignore[no-any-return]


def create_registry(config: GatewayConfig) -> Registry:
    """The registry ``config.registry_name`` names, built from ``config``."""
    registry = load_factory(config.registry_name)(config)
    missing = [name for name in ("cycle_log", "listeners", "monitor", "store", "run_cleanup_cycle", "add_session")
               if not hasattr(registry, name)]
    if missing:
        raise ValueError(f"registry {config.registry_name} lacks {', '.join(missing)} (see gateway_sim.registry_api)")
    return registry
