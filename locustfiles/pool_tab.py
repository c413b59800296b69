"""The "DB pool" tab of Locust's web UI: pool gauges and ``pg_stat_activity`` per gateway.

Uses Locust's extension points: ``extended_tabs`` / ``extended_tables`` in the page's template arguments,
and an ``extended_stats`` entry added to each ``/stats/requests`` answer, so the tab refreshes with the
stats. Rows come from the :class:`~locustfiles.cleanup_stats.CyclePoller`'s latest view of each gateway.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from locustfiles.gateway_view import pool_row

if TYPE_CHECKING:
    from locustfiles.cleanup_stats import CyclePoller

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
