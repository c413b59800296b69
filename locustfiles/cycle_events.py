"""Translate one ``/admin/cycles`` cycle record into Locust request events (pure; no Locust import).

Names: ``cycle`` (total), ``expiry``, ``phase1``, ``phase2``; request type ``CLEANUP``. Response time is
the phase's duration in ms, response length the sessions it handled; a cycle with refresh errors (or an
``error``) is a failure.
"""

from __future__ import annotations

from typing import Any

REQUEST_TYPE = "CLEANUP"


class CleanupFailure(Exception):
    """A cleanup cycle that had refresh errors or failed a phase."""


def cycle_events(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Keyword arguments for ``events.request.fire`` for one ``/admin/cycles`` cycle record."""
    errors = int(record.get("refresh_errors") or 0)
    error = record.get("error")
    refresh_failure = CleanupFailure("refresh errors in phase 2") if errors else None
    context = {"worker": record.get("worker"), "cycle": record.get("cycle")}
    phases: list[tuple[str, str, int, Exception | None]] = [
        (
            "cycle",
            "total_ms",
            int(record.get("sessions_local") or 0),
            CleanupFailure(error) if error else refresh_failure,
        ),
        ("expiry", "expiry_ms", int(record.get("expired") or 0), CleanupFailure(error) if error else None),
        ("phase1", "phase1_ms", int(record.get("checked") or 0), None),
        (
            "phase2",
            "phase2_ms",
            int(record.get("refreshed") or 0) + int(record.get("removed_missing") or 0) + errors,
            refresh_failure,
        ),
    ]
    return [
        {
            "request_type": REQUEST_TYPE,
            "name": name,
            "response_time": float(record.get(key) or 0.0),
            "response_length": length,
            "exception": exception,
            "context": context,
        }
        for name, key, length, exception in phases
    ]
