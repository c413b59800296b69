"""What the load side last saw of one gateway's ``/admin`` routes (pure; no Locust import)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class GatewayView:
    """What was last seen of one gateway."""

    url: str
    since: int | None = None
    worker: str = ""
    pool: dict[str, Any] = field(default_factory=dict)
    last_cycle: dict[str, Any] = field(default_factory=dict)
    sessions: dict[str, Any] = field(default_factory=dict)
    db: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    db_error: str | None = None


def pool_row(view: GatewayView) -> dict[str, Any]:
    """One table row from a gateway's latest ``/admin/cycles`` pool block and ``/admin/db`` answer."""
    pool, window, db = view.pool, view.last_cycle.get("pool") or {}, view.db
    uptime = float(pool.get("uptime_seconds") or 0.0)
    exhausted = float(pool.get("exhausted_seconds") or 0.0) / uptime if uptime > 0 else 0.0
    by_state = db.get("by_state") or {}
    name = f"{view.worker} ({view.url})" if view.worker else view.url
    return {
        "name": name,
        "gateway": name + (f" — unreachable: {view.error}" if view.error else ""),
        "checked_out": f"{pool.get('checked_out', '–')} / {pool.get('limit', '–')}",
        "overflow": pool.get("overflow", "–"),
        "waiters": pool.get("waiters", "–"),
        "wait_p95_ms": window.get("wait_ms_p95", "–"),
        "timeouts": pool.get("timeouts_total", "–"),
        "exhausted": f"{exhausted:.1%}",
        "executor_queue": pool.get("executor_queue", "–"),
        "sessions": view.sessions.get("active", "–"),
        "pg_by_state": (
            f"no answer ({view.db_error})"
            if view.db_error
            else ", ".join(f"{k} {v}" for k, v in sorted(by_state.items())) or "–"
        ),
        "max_connections": db.get("max_connections", "–"),
    }
