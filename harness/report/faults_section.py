"""The report's section on faults."""

from __future__ import annotations

import html
from typing import Any


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
