"""Successive snapshots of ``mcp_sessions`` turned into writes, inserts and deletions (pure, no database)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from harness.observe.infer import RefreshEvent, Vanished

INSERT_SLACK = 0.1
"""A first-seen row whose ``last_accessed`` is this far past ``created_at`` was written after its insert
(some gateways set both from the application's clock, one after the other)."""


class RowTracker:
    """Diffs each snapshot ``[(session_id, created_at, last_accessed)]`` against the previous one."""

    def __init__(self, since: float | None = None) -> None:
        self.since = since
        """Writes at or after this time count even in the first snapshot (they happened while watching)."""
        self.rows: dict[str, float] = {}
        self.writes: Counter[float] = Counter()
        self.vanished: list[Vanished] = []
        self.inserted = 0
        self.rows_peak = 0
        self.snapshots = 0
        self._last_t: float | None = None

    def update(self, t: float, snapshot: Iterable[tuple[str, float, float]]) -> None:
        """Absorb the rows as read at database time ``t`` (epoch seconds)."""
        current: dict[str, float] = {}
        first = self._last_t is None
        for session_id, created_at, last_accessed in snapshot:
            current[session_id] = last_accessed
            before = self.rows.get(session_id)
            if before is None:
                if first:
                    if self.since is not None and last_accessed >= self.since \
                            and last_accessed > created_at + INSERT_SLACK:
                        self.writes[last_accessed] += 1
                    continue
                self.inserted += 1
                if last_accessed > created_at + INSERT_SLACK:
                    self.writes[last_accessed] += 1
            elif last_accessed != before:
                self.writes[last_accessed] += 1
        if self._last_t is not None:
            self.vanished.extend(Vanished(self._last_t, t, la) for sid, la in self.rows.items() if sid not in current)
        self.rows = current
        self.rows_peak = max(self.rows_peak, len(current))
        self.snapshots += 1
        self._last_t = t

    def events(self, since: float | None = None) -> list[RefreshEvent]:
        """The writes seen, one event per distinct timestamp (optionally only from ``since`` on)."""
        return sorted((RefreshEvent(ts, n) for ts, n in self.writes.items() if since is None or ts >= since),
                      key=lambda e: e.ts)

    def forget_before(self, ts: float) -> None:
        """Drop writes and deletions older than ``ts`` (a long live observation keeps memory flat)."""
        for key in [k for k in self.writes if k < ts]:
            del self.writes[key]
        self.vanished = [v for v in self.vanished if v.before >= ts]
