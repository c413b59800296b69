"""Infer cleanup cycles from what the database shows (pure functions, tested without servers).

Input: the distinct ``last_accessed`` values the sampler saw appear (each the start time of the transaction
that wrote it, with how many rows got it), the gateway's transactions caught in flight in
``pg_stat_activity``, and the rows seen to vanish between two polls.

Method:
  1. *Waves*: sorted refresh timestamps are grouped while consecutive ones are at most ``wave_gap`` apart.
     A wave of at least ``wave_rows`` rows is *heavy*: phase 2 starts ``min(c_eff, N)`` refreshes at once
     (bounded) or writes a chunk of ids with one timestamp (batched), request touches arrive one by one.
  2. *Cycles*: heavy waves at most ``max_gap`` apart chain into one cycle; light waves (touches) between
     them are counted, at the edges they are not. A chain of fewer than ``min_rows`` rows is dropped.
  3. *Start* is the first heavy wave's first timestamp (phase 2's start: the expiry sweep and phase 1
     before it take milliseconds and leave no timestamp). *End* is the latest end of a refresh
     transaction caught in flight, or the last timestamp plus the median refresh transaction duration.
  4. Rows that vanished in the poll window around the start are the sweep's and phase 1's: *expired* when
     the row had not been written since the previous cycle started, else *removed one by one*.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median


@dataclass(frozen=True)
class RefreshEvent:
    """``rows`` rows whose ``last_accessed`` became ``ts`` (epoch seconds): one writing transaction."""

    ts: float
    rows: int = 1


@dataclass(frozen=True)
class Transaction:
    """A gateway transaction seen in ``pg_stat_activity``: its start and, if seen, its end (epoch s)."""

    start: float
    end: float | None = None


@dataclass(frozen=True)
class Vanished:
    """A row present at the poll at ``after`` and gone at the poll at ``before``."""

    after: float
    before: float
    last_accessed: float


@dataclass(frozen=True)
class InferenceParams:
    """Thresholds of the inference (seconds, rows)."""

    wave_gap: float = 0.02
    wave_rows: int = 3
    max_gap: float = 0.5
    min_rows: int = 8
    vanish_window: float = 0.1


@dataclass(frozen=True)
class InferredCycle:
    """One cleanup cycle as the database saw it."""

    start: float
    end: float
    last_refresh: float
    refreshed: int
    waves: int
    expired: int | None
    removed_one_by_one: int | None
    end_from: str
    """``caught`` (a refresh transaction's end was seen) or ``estimated`` (last start + median duration)."""

    @property
    def duration_ms(self) -> float:
        return round((self.end - self.start) * 1000.0, 3)


@dataclass(frozen=True)
class _Wave:
    first: float
    last: float
    rows: int


def _waves(events: Sequence[RefreshEvent], gap: float) -> list[_Wave]:
    waves: list[_Wave] = []
    for event in sorted(events, key=lambda e: e.ts):
        if waves and event.ts - waves[-1].last <= gap:
            w = waves[-1]
            waves[-1] = _Wave(w.first, event.ts, w.rows + event.rows)
        else:
            waves.append(_Wave(event.ts, event.ts, event.rows))
    return waves


def _chains(waves: list[_Wave], params: InferenceParams) -> list[list[_Wave]]:
    """Heavy waves chained by ``max_gap``, with the light waves between them."""
    chains: list[list[_Wave]] = []
    current: list[_Wave] = []
    pending: list[_Wave] = []  # light waves after the current chain's last heavy wave
    for wave in waves:
        heavy = wave.rows >= params.wave_rows
        if current and wave.first - current[-1].last > params.max_gap:
            chains.append(current)
            current, pending = [], []
        if heavy:
            current.extend(pending)
            current.append(wave)
            pending = []
        elif current:
            pending.append(wave)
    if current:
        chains.append(current)
    return [c for c in chains if sum(w.rows for w in c) >= params.min_rows]


def _duration_index(transactions: Sequence[Transaction]) -> tuple[list[float], list[Transaction]]:
    done = sorted((t for t in transactions if t.end is not None and t.end >= t.start), key=lambda t: t.start)
    return [t.start for t in done], done


def infer_cycles(
    events: Sequence[RefreshEvent],
    transactions: Sequence[Transaction] = (),
    vanished: Sequence[Vanished] = (),
    params: InferenceParams | None = None,
) -> list[InferredCycle]:
    """The cleanup cycles in ``events`` (see the module docstring for the method)."""
    params = params or InferenceParams()
    chains = _chains(_waves(events, params.wave_gap), params)
    starts, done = _duration_index(transactions)
    spans = [(c[0].first, c[-1].last) for c in chains]
    in_cycles = [t.end - t.start for t in done  # type: ignore[operator]
                 if any(a - 1e-6 <= t.start <= b + 1e-6 for a, b in spans)]
    typical = median(in_cycles) if in_cycles else 0.0
    cycles: list[InferredCycle] = []
    previous_start: float | None = None
    for chain, (first, last) in zip(chains, spans, strict=True):
        lo = bisect.bisect_left(starts, first - 1e-6)
        hi = bisect.bisect_right(starts, last + 1e-6)
        caught = [t.end for t in done[lo:hi] if t.end is not None and t.end <= last + params.max_gap]
        estimated = last + typical
        end, end_from = (max(caught), "caught") if caught and max(caught) >= estimated else (estimated, "estimated")
        expired, one_by_one = _classify_vanished(vanished, first, previous_start, params.vanish_window)
        cycles.append(InferredCycle(
            start=first, end=max(end, last), last_refresh=last, refreshed=sum(w.rows for w in chain),
            waves=sum(1 for w in chain if w.rows >= params.wave_rows), expired=expired,
            removed_one_by_one=one_by_one, end_from=end_from,
        ))
        previous_start = first
    return cycles


def _classify_vanished(vanished: Sequence[Vanished], start: float, previous_start: float | None,
                       window: float) -> tuple[int | None, int | None]:
    """Rows gone in the poll window around ``start``: (expired, removed one by one).

    Without a previous cycle there is no telling a row the sweep expired from one phase 1 removed: both None.
    """
    burst = [v for v in vanished if v.after <= start + 1e-6 and v.before >= start - window]
    if previous_start is None:
        return None, None
    expired = sum(1 for v in burst if v.last_accessed < previous_start - 1e-6)
    return expired, len(burst) - expired


Backend = tuple[float | None, str, float | None]
"""One backend in a ``pg_stat_activity`` sample: ``(xact_start, state, state_change)`` (epoch s)."""


class TransactionTracker:
    """Turns successive ``pg_stat_activity`` samples into :class:`Transaction` records.

    A transaction seen with start X ends at the ``state_change`` of the first later sample that shows its
    backend idle; if that sample shows another transaction instead (or no backend), its end is unknown.
    """

    def __init__(self) -> None:
        self.open: dict[int, float] = {}
        self.transactions: list[Transaction] = []

    def update(self, backends: dict[int, Backend]) -> None:
        """Absorb one sample ``{pid: (xact_start, state, state_change)}``."""
        for pid, start in list(self.open.items()):
            now = backends.get(pid)
            if now is not None and now[0] == start:
                continue
            ended_idle = now is not None and now[0] is None and now[1] == "idle" and now[2] is not None
            self.transactions.append(Transaction(start, now[2] if ended_idle and now else None))
            del self.open[pid]
        for pid, (xact_start, _state, _change) in backends.items():
            if xact_start is not None and pid not in self.open:
                self.open[pid] = xact_start

    def all(self) -> list[Transaction]:
        """Every transaction so far, the ones still open without an end."""
        return [*self.transactions, *(Transaction(s) for s in self.open.values())]


def transactions_from_samples(samples: Sequence[dict[int, Backend]]) -> list[Transaction]:
    """:class:`TransactionTracker` over a list of samples."""
    tracker = TransactionTracker()
    for sample in samples:
        tracker.update(sample)
    return tracker.all()
