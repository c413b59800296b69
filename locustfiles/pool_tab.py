"""The "DB pool" tab of Locust's web UI: pool gauges and ``pg_stat_activity`` per gateway.

Uses Locust's extension points: ``extended_tabs`` / ``extended_tables`` in the page's template arguments,
and an ``extended_stats`` entry added to each ``/stats/requests`` answer, so the tab refreshes with the
stats. Rows come from the :class:`~locustfiles.cleanup_stats.CyclePoller`'s latest view of each gateway.
"""

from __future__ import annotations

import json
from typing import Any

from locustfiles.cleanup_stats import CyclePoller, GatewayView

TAB_KEY = "db-pool"
COLUMNS = [
    ("gateway", "Gateway"),
    ("checked_out", "Checked out / limit"),
    ("overflow", "Overflow"),
    ("waiters", "Waiters"),
    ("wait_p95_ms", "Wait p95 (ms, last cycle)"),
    ("timeouts", "Pool timeouts"),
    ("exhausted", "Exhausted (time share)"),
    ("executor_queue", "Executor queue"),
    ("sessions", "Sessions active"),
    ("pg_by_state", "pg_stat_activity by state"),
    ("max_connections", "max_connections"),
]


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
        "pg_by_state": ", ".join(f"{k} {v}" for k, v in sorted(by_state.items())) or "–",
        "max_connections": db.get("max_connections", "–"),
    }


def pool_rows(poller: CyclePoller) -> list[dict[str, Any]]:
    """Rows for every gateway polled so far."""
    return [pool_row(view) for view in poller.views.values()]


def install(web_ui: Any, poller: CyclePoller) -> None:
    """Add the tab to the web UI and its rows to every ``/stats/requests`` answer."""
    web_ui.template_args["extended_tabs"] = [{"title": "DB pool", "key": TAB_KEY}]
    web_ui.template_args["extended_tables"] = [
        {"key": TAB_KEY, "structure": [{"key": key, "title": title} for key, title in COLUMNS]}
    ]

    @web_ui.app.after_request
    def add_pool_stats(response: Any) -> Any:
        from flask import request

        if request.path.rstrip("/").endswith("/stats/requests") and response.is_json:
            body = response.get_json()
            body["extended_stats"] = [{"key": TAB_KEY, "data": pool_rows(poller)}]
            response.set_data(json.dumps(body))
        return response
