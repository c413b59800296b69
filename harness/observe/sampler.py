"""The observer's one read-only connection: polls ``pg_stat_activity`` and ``mcp_sessions`` at 20 Hz.

It never writes: the connection runs with ``default_transaction_read_only = on`` in autocommit (each poll
its own read-only transaction), and every statement is a ``SELECT``.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from harness.errors import ObserveError
from harness.observe.infer import (
    ActivitySample,
    InferenceParams,
    InferredCycle,
    TransactionTracker,
    infer_cycles,
    turnaround,
)
from harness.observe.rows import RowTracker

APPLICATION_NAME = "mcp-loadtest-observe"
POLL_INTERVAL = 0.025
"""``pg_stat_activity`` every 25 ms (40 Hz), continuously while an expiry sweep is due (see :class:`SweepWindow`)."""
ROWS_INTERVAL = 0.05
"""``mcp_sessions`` every 50 ms (20 Hz)."""
TURNAROUND_SAMPLES = 2000
"""How many statement-to-statement gaps are kept (the latest)."""
HOT_ROWS_INTERVAL = 0.2
"""While a sweep is due: the table less often (write times are exact whenever they are read)."""
SWEEP = re.compile(r"^\s*DELETE\s+FROM\s+\"?mcp_sessions\"?\s+WHERE\b.*\blast_accessed\b\s*<", re.I | re.S)
"""The expiry sweep's statement, whoever wrote it (ORM or hand-written SQL)."""


def libpq_url(url: str) -> str:
    """A SQLAlchemy-style ``postgresql+driver://`` URL as libpq takes it."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.startswith(("postgresql", "postgres")):
        raise ObserveError(f"--db-url must be a postgresql:// URL, got {url!r}")
    return f"postgresql://{rest}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def connect(url: str, application_name: str = APPLICATION_NAME, timeout: float = 5.0) -> psycopg.Connection:
    """The read-only connection, checked: reachable, ``mcp_sessions`` present and readable."""
    try:
        conn = psycopg.connect(libpq_url(url), autocommit=True, application_name=application_name,
                               options="-c default_transaction_read_only=on", connect_timeout=max(1, int(timeout)))
    except psycopg.Error as exc:
        raise ObserveError(f"cannot connect to the database: {_first_line(exc)}") from None
    try:
        row = conn.execute("SELECT current_database(), to_regclass('mcp_sessions') IS NOT NULL,"
                           " current_setting('default_transaction_read_only')").fetchone()
        assert row is not None
        database, has_table, read_only = row
        if read_only != "on":
            raise ObserveError("the connection did not become read-only (default_transaction_read_only is off)")
        if not has_table:
            raise ObserveError(f"database {database!r} has no mcp_sessions table: is this the gateway's database?")
        try:
            conn.execute("SELECT session_id, created_at, last_accessed FROM mcp_sessions LIMIT 1").fetchall()
        except psycopg.Error as exc:
            raise ObserveError(f"cannot read mcp_sessions in {database!r}: {_first_line(exc)}") from None
    except BaseException:
        conn.close()
        raise
    return conn


_BACKENDS = (
    "SELECT pid, coalesce(state, 'unknown') AS state, extract(epoch from xact_start)::float8 AS xs,"
    " extract(epoch from state_change)::float8 AS sc, left(query, 200) AS q,"
    " extract(epoch from query_start)::float8 AS qs FROM pg_stat_activity"
    " WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
)
_SAMPLE = "SELECT extract(epoch from clock_timestamp())::float8, a.pid, a.state, a.xs, a.sc, a.q, a.qs"
_ACTIVITY = f"{_SAMPLE} FROM (SELECT 1) one LEFT JOIN LATERAL ({_BACKENDS}) a ON true"
_ACTIVITY_NAMED = (f"{_SAMPLE} FROM (SELECT 1) one LEFT JOIN LATERAL ({_BACKENDS}"
                   " AND left(application_name, length(%(name)s)) = %(name)s) a ON true")
_ROWS = ("SELECT session_id, extract(epoch from created_at)::float8, extract(epoch from last_accessed)::float8,"
         " extract(epoch from clock_timestamp())::float8 FROM mcp_sessions")
_CLOCK = "SELECT extract(epoch from clock_timestamp())::float8"
_TABLE_STATS = ("SELECT n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables"
                " WHERE relid = to_regclass('mcp_sessions')")


@dataclass
class Observation:
    """What the sampler saw (times are the database's clock, epoch seconds)."""

    started_at: float = 0.0
    ended_at: float = 0.0
    pg_samples: list[dict[str, Any]] = field(default_factory=list)
    rows: RowTracker = field(default_factory=RowTracker)
    transactions: TransactionTracker = field(default_factory=TransactionTracker)
    table_stats_start: dict[str, int] | None = None
    table_stats_end: dict[str, int] | None = None
    max_connections: int | None = None
    application_name: str | None = None
    poll_errors: int = 0
    in_transaction: list[tuple[float, int]] = field(default_factory=list)
    sweeps: set[float] = field(default_factory=set)
    """Start times of expiry-sweep transactions caught in flight."""
    activity: list[ActivitySample] = field(default_factory=list)
    hot_seconds: float = 0.0
    turnaround_gaps: deque[float] = field(default_factory=lambda: deque(maxlen=TURNAROUND_SAMPLES))
    """Gaps between one statement's end and the next one's arrival inside a gateway transaction (s)."""

    def turnaround(self) -> float:
        """The client's turnaround seen so far (see :func:`harness.observe.infer.turnaround`)."""
        return turnaround(list(self.turnaround_gaps))

    def cycles(self, params: InferenceParams | None = None, since: float | None = None) -> list[InferredCycle]:
        """The cycles inferred from everything seen so far (or from ``since`` on)."""
        activity = self.activity if since is None else [a for a in self.activity if a.t >= since]
        return infer_cycles(self.rows.events(since), self.transactions.all(), self.rows.vanished, params,
                            sorted(self.sweeps), activity, self.turnaround())


class SweepWindow:
    """When the next cycle is due, poll ``pg_stat_activity`` without pause to catch its expiry sweep.

    About once a second, the cycles of the last minute give the sleep between one cycle's end and the
    next start; from two cycles on, the window is ``[last end + sleep - lead, last end + sleep + lag]``.
    The lead is half the sleep, from ``min_lead`` to ``max_lead``: a start seen late (at phase 2, the sweep
    not caught) makes the sleep look longer by as much.
    """

    def __init__(self, min_lead: float = 0.5, max_lead: float = 2.0, lag: float = 0.3, every: float = 1.0) -> None:
        self.min_lead, self.max_lead, self.lag, self.every = min_lead, max_lead, lag, every
        self.lead = min_lead
        self.due: float | None = None
        self._checked = 0.0

    def hot(self, obs: Observation, now: float) -> bool:
        """Whether a sweep is due now (the estimate is refreshed about once a second, never inside a window)."""
        inside = self.due is not None and self.due - self.lead <= now <= self.due + self.lag
        if not inside and now - self._checked >= self.every:
            self._checked = now
            cycles = [c for c in obs.cycles(since=now - 60.0) if c.end < now - 0.5]
            sleeps = sorted(b.start - a.end for a, b in itertools.pairwise(cycles))
            sleep = sleeps[len(sleeps) // 2] if sleeps else None
            self.due = cycles[-1].end + sleep if sleep is not None else None
            self.lead = min(self.max_lead, max(self.min_lead, (sleep or 0.0) / 2))
        return self.due is not None and self.due - self.lead <= now <= self.due + self.lag


class Sampler:
    """Polls until :meth:`stop` (or ``duration`` seconds); :attr:`observation` holds the result."""

    def __init__(self, db_url: str, application_name: str | None = None, interval: float = POLL_INTERVAL,
                 on_poll: Callable[[Observation], None] | None = None) -> None:
        self.db_url = db_url
        self.filter_name = application_name
        self.interval = interval
        self.on_poll = on_poll
        self.observation = Observation(application_name=application_name)
        self._stop = threading.Event()
        self._conn: psycopg.Connection | None = None
        self._rows_at = 0.0
        self._sample_at = 0.0
        self._window = SweepWindow()
        self._hot = False
        self._backends: dict[int, tuple[float | None, str, float | None]] = {}

    def open(self) -> None:
        """Connect and check (raises :class:`ObserveError`)."""
        self._conn = connect(self.db_url)
        row = self._conn.execute("SELECT current_setting('max_connections')::int").fetchone()
        self.observation.max_connections = int(row[0]) if row else None

    def stop(self) -> None:
        """Ask the polling loop to finish after the current poll."""
        self._stop.set()

    def _table_stats(self) -> dict[str, int] | None:
        assert self._conn is not None
        row = self._conn.execute(_TABLE_STATS).fetchone()
        return None if row is None else {"n_tup_ins": int(row[0]), "n_tup_upd": int(row[1]),
                                         "n_tup_del": int(row[2])}

    def poll(self) -> float:
        """One poll of the gateway's backends, and of ``mcp_sessions`` when it is due; returns the db time."""
        assert self._conn is not None
        obs = self.observation
        if self.filter_name:
            result = self._conn.execute(_ACTIVITY_NAMED, {"name": self.filter_name}).fetchall()
        else:
            result = self._conn.execute(_ACTIVITY).fetchall()
        t = float(result[0][0])
        activity = [r[1:] for r in result if r[1] is not None]
        previous = obs.activity[-1].t if obs.activity else obs.started_at
        closed = obs.transactions.update({int(a[0]): (a[2], str(a[1]), a[3]) for a in activity})
        obs.activity.append(ActivitySample(
            t, tuple(a[2] for a in activity if a[2] is not None),
            tuple(a[3] for a in activity if a[1] == "idle" and a[3] is not None and a[3] > previous),
            tuple(closed)))
        obs.sweeps.update(a[2] for a in activity if a[2] is not None and a[4] and SWEEP.match(a[4]))
        self._turnarounds(activity)
        if t - self._sample_at >= 0.02:
            self._sample_at = t
            states = Counter(str(a[1]) for a in activity)
            obs.pg_samples.append({"t": round(t - obs.started_at, 3), "total": len(activity), **states})
            obs.in_transaction.append((t, sum(1 for a in activity if a[2] is not None)))
        if t - self._rows_at >= (HOT_ROWS_INTERVAL if self._hot else ROWS_INTERVAL):
            self._rows_at = t
            rows = self._conn.execute(_ROWS).fetchall()
            obs.rows.update(float(rows[-1][3]) if rows else t, ((r[0], r[1], r[2]) for r in rows))
        return t

    def _turnarounds(self, activity: list[tuple[Any, ...]]) -> None:
        """A backend seen idle inside a transaction, then in the same transaction with a later statement:
        the gap from the first statement's end to the next one's arrival is one client turnaround (or more)."""
        now: dict[int, tuple[float | None, str, float | None]] = {}
        for pid, state, xs, sc, _query, qs in activity:
            before = self._backends.get(int(pid))
            if (xs is not None and before is not None and before[0] == xs and before[1] == "idle in transaction"
                    and before[2] is not None and qs is not None and qs > before[2]):
                self.observation.turnaround_gaps.append(qs - before[2])
            now[int(pid)] = (xs, str(state), sc)
        self._backends = now

    def run(self, duration: float | None = None) -> Observation:
        """Poll every ``interval`` seconds until stopped or ``duration`` has passed; always closes."""
        if self._conn is None:
            self.open()
        assert self._conn is not None
        obs = self.observation
        try:
            row = self._conn.execute(_CLOCK).fetchone()
            obs.started_at = float(row[0]) if row else time.time()
            obs.rows.since = obs.started_at
            obs.table_stats_start = self._table_stats()
            deadline = None if duration is None else time.monotonic() + duration
            while not self._stop.is_set() and (deadline is None or time.monotonic() < deadline):
                began = time.monotonic()
                try:
                    now = self.poll()
                except psycopg.OperationalError as exc:
                    obs.poll_errors += 1
                    if self._conn.closed:
                        raise ObserveError(f"lost the database connection: {_first_line(exc)}") from None
                    continue
                if self.on_poll is not None:
                    self.on_poll(obs)
                self._hot = self._window.hot(obs, now)
                if self._hot:
                    obs.hot_seconds += time.monotonic() - began
                    continue
                self._stop.wait(max(0.0, self.interval - (time.monotonic() - began)))
            row = self._conn.execute(_CLOCK).fetchone()
            obs.ended_at = float(row[0]) if row else time.time()
            obs.table_stats_end = self._table_stats()
        finally:
            self._conn.close()
            self._conn = None
        return obs
