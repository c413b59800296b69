"""Infer cleanup cycles from what the database shows (pure functions, tested without servers).

Input: the distinct ``last_accessed`` values the sampler saw appear (each the start time of the transaction
that wrote it, with how many rows got it), the gateway's transactions caught in flight in
``pg_stat_activity``, and the rows seen to vanish between two polls.

Method:
  1. *Waves*: sorted refresh timestamps are grouped while consecutive ones are at most ``wave_gap`` apart.
     A wave of at least ``wave_rows`` rows is *heavy*: phase 2 starts ``min(c_eff, N)`` refreshes at once
     (bounded) or writes a chunk of ids with one timestamp (batched), request touches arrive one by one.
  2. *Cycles*: heavy waves at most ``max_gap`` apart chain into a fragment; light waves (touches) between
     them are counted, at the edges they are not. A fragment with fewer than ``min_rows`` rows in heavy
     waves is dropped (a few touches that happened to bunch up). Fragments closer than
     :func:`chain_gap` (half the typical sleep between cycles) are one cycle that stalled.
  3. *Start* is the start of the expiry sweep's transaction when it was caught in flight (a
     ``DELETE FROM mcp_sessions … last_accessed <`` statement), less the client's turnaround; else the
     cleanup loop's timer read from the cycles whose sweep was caught (a fixed sleep after each end, or a
     fixed period, whichever varies less: :func:`_period_starts`); else phase 2's first refresh less the
     median lead (sweep start to first refresh) of the cycles whose sweep was caught; with none caught, the
     first refresh itself (the sweep and phase 1 before it leave no timestamp).
     *End*: after the last heavy wave the cycle is followed in ``pg_stat_activity`` (see :func:`_tail`): it
     ends at the first poll with none of its transactions open, at the latest transaction end seen by
     then. Without polls that show it: the end of a last-wave transaction caught in flight, else the last
     timestamp plus the median duration of the refresh transactions caught in flight.
  4. Rows that vanished in the poll window around the start are the sweep's and phase 1's: *expired* when
     the row had not been written since the previous cycle started, else *removed one by one*.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
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
class ActivitySample:
    """One ``pg_stat_activity`` poll at ``t``: starts of the gateway's open transactions, and the
    ``state_change`` of backends that went idle since the previous poll (their transactions' ends)."""

    t: float
    open_starts: tuple[float, ...] = ()
    idle_ends: tuple[float, ...] = ()
    closed: tuple[Transaction, ...] = ()
    """Transactions this poll saw end (their backend idle), with their starts: whose end each one is."""


@dataclass(frozen=True)
class InferenceParams:
    """Thresholds of the inference (seconds, rows)."""

    wave_gap: float = 0.02
    wave_rows: int = 4
    max_gap: float = 0.3
    """Heavy waves closer than this always chain; the gap used is :func:`chain_gap` (adapts to the period)."""
    max_gap_limit: float = 10.0
    min_rows: int = 12
    vanish_window: float = 0.1
    sweep_lead: float = 1.0
    """An expiry sweep caught in flight up to this long before the first refresh starts the cycle."""
    period_slack: float = 0.05
    """A start from the period may fall this long after the first refresh's start time and still count
    (it is then the first refresh): jitter of the gateway's sleep."""


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
    start_from: str
    """``sweep`` (the expiry sweep's transaction was caught in flight), ``period`` (the previous cycle's end
    plus the sleep measured between cycles whose sweep was caught, or its start plus their period), ``lead``
    (the first refresh less the median sweep-to-refresh lead of the cycles whose sweep was caught) or
    ``refresh`` (the first refresh)."""
    end_from: str
    """``activity`` (the end of the cycle's last transaction, seen in ``pg_stat_activity``), ``caught`` (a
    last-wave transaction's end was seen) or ``estimated`` (last start + median transaction duration)."""
    first_refresh: float | None = None
    """Phase 2's first refresh (the start, unless a sweep was caught or the start estimated)."""

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


def _fragments(waves: list[_Wave], params: InferenceParams) -> list[list[_Wave]]:
    """Heavy waves chained by ``max_gap``, with the light waves between them; too few heavy rows dropped."""
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
    return [c for c in chains if sum(w.rows for w in c if w.rows >= params.wave_rows) >= params.min_rows]


def chain_gap(fragments: Sequence[Sequence[_Wave]], params: InferenceParams) -> float:
    """The gap that separates cycles: half the upper quartile of the gaps between fragments (mostly the
    sleeps between cycles; a stall inside a cycle is shorter), within [``max_gap``, ``max_gap_limit``];
    ``max_gap`` itself with fewer than three gaps."""
    gaps = sorted(b[0].first - a[-1].last for a, b in pairwise(fragments))
    if len(gaps) < 3:
        return params.max_gap
    upper_quartile = gaps[min(len(gaps) - 1, (3 * len(gaps)) // 4)]
    return min(params.max_gap_limit, max(params.max_gap, upper_quartile / 2))


def _chains(waves: list[_Wave], params: InferenceParams) -> list[list[_Wave]]:
    """Fragments of phase 2 (see :func:`_fragments`) merged across stalls shorter than :func:`chain_gap`."""
    fragments = _fragments(waves, params)
    gap = chain_gap(fragments, params)
    chains: list[list[_Wave]] = []
    for fragment in fragments:
        if chains and fragment[0].first - chains[-1][-1].last <= gap:
            chains[-1] = [*chains[-1], *fragment]
        else:
            chains.append(list(fragment))
    return chains


def _duration_index(transactions: Sequence[Transaction]) -> tuple[list[float], list[Transaction]]:
    done = sorted((t for t in transactions if t.end is not None and t.end >= t.start), key=lambda t: t.start)
    return [t.start for t in done], done


def _tail(chain: list[_Wave], later: Sequence[_Wave], activity: Sequence[ActivitySample],
          times: Sequence[float], limit: float) -> tuple[list[_Wave], float | None]:
    """Follow a cycle past its last heavy wave in ``pg_stat_activity``.

    Light waves that start while a transaction the cycle started is still open belong to it (bounded
    refreshes whose starts drifted apart); the cycle ends at the first poll with none of its transactions
    open, at the latest end of its own transactions seen by then (of any, when none of its own was seen to
    end). ``None`` when the polls do not show it.
    """
    first, last = chain[0].first, chain[-1].last
    i = bisect.bisect_right(times, last)
    j = 0
    ends: list[float] = []
    own: list[float] = []
    for sample in activity[i:]:
        if sample.t > last + limit:
            return chain, None
        while j < len(later) and later[j].first <= sample.t and later[j].first - last <= limit:
            chain = [*chain, later[j]]
            last = later[j].last
            j += 1
        ends.extend(e for e in sample.idle_ends if e > last)
        own.extend(t.end for t in sample.closed if t.end is not None and first - 1e-6 <= t.start <= last + 1e-6)
        if not any(first - 1e-6 <= s <= last + 1e-6 for s in sample.open_starts):
            if own:  # the end of the cycle's own last transaction, not of whatever else went idle meanwhile
                return chain, max(own)
            return chain, max(ends) if ends else None
    return chain, None


def infer_cycles(
    events: Sequence[RefreshEvent],
    transactions: Sequence[Transaction] = (),
    vanished: Sequence[Vanished] = (),
    params: InferenceParams | None = None,
    sweeps: Sequence[float] = (),
    activity: Sequence[ActivitySample] = (),
    turnaround: float = 0.0,
) -> list[InferredCycle]:
    """The cycles in ``events`` (see the module docstring for the method).

    ``turnaround`` is the client's time between two statements of one transaction as the database sees it
    (see :func:`turnaround`): the gateway starts a cycle that long before its first statement reaches the
    database, so a caught sweep's start is moved back by it.
    """
    params = params or InferenceParams()
    waves = _waves(events, params.wave_gap)
    chains = _chains(waves, params)
    times = [a.t for a in activity]
    wave_firsts = [w.first for w in waves]
    tails: list[float | None] = []
    for k, chain in enumerate(chains):
        after = bisect.bisect_right(wave_firsts, chain[-1].last)
        stop = bisect.bisect_left(wave_firsts, chains[k + 1][0].first) if k + 1 < len(chains) else len(waves)
        chains[k], tail_end = _tail(chain, waves[after:stop], activity, times, params.max_gap)
        tails.append(tail_end)
    starts, done = _duration_index(transactions)
    spans = [(c[0].first, c[-1].last) for c in chains]
    in_cycles = [t.end - t.start for t in done  # type: ignore[operator]
                 if any(a - 1e-6 <= t.start <= b + 1e-6 for a, b in spans)]
    typical = median(in_cycles) if in_cycles else 0.0
    cycles: list[InferredCycle] = []
    previous_start: float | None = None
    previous_last: float | None = None
    for chain, (first, last), tail_end in zip(chains, spans, tails, strict=True):
        lo = bisect.bisect_left(starts, first - 1e-6)
        hi = bisect.bisect_right(starts, last + 1e-6)
        ends = [(t.start, t.end) for t in done[lo:hi] if t.end is not None and t.end <= last + params.max_gap]
        final = [e for s, e in ends if s >= chain[-1].first - 1e-6]
        if tail_end is not None:
            end, end_from = max([tail_end, *final]), "activity"
        elif final:
            end, end_from = max(final), "caught"
        else:
            end, end_from = max([last + typical, *(e for _, e in ends)]), "estimated"
        expired, one_by_one = _classify_vanished(vanished, first, previous_start, params.vanish_window)
        lead = [s for s in sweeps if first - params.sweep_lead <= s <= first
                and (previous_last is None or s > previous_last)]
        cycles.append(InferredCycle(
            start=max(lead) - turnaround if lead else first, end=max(end, last),
            start_from="sweep" if lead else "refresh",
            last_refresh=last, refreshed=sum(w.rows for w in chain),
            waves=sum(1 for w in chain if w.rows >= params.wave_rows), expired=expired,
            removed_one_by_one=one_by_one, end_from=end_from, first_refresh=first,
        ))
        previous_start, previous_last = first, last
    return _lead_starts(_period_starts(cycles, params))


def _spread(values: Sequence[float]) -> float:
    return max(values) - min(values) if len(values) > 1 else float("inf")


def _period_starts(cycles: list[InferredCycle], params: InferenceParams) -> list[InferredCycle]:
    """Cycles whose sweep was not caught start when the gateway's timer says, if the timer can be read.

    A cleanup loop sleeps between cycles: a fixed sleep after each cycle's end (upstream's loop and the
    sim's) or a fixed period from start to start. Consecutive cycles whose later sweep was caught measure
    both gaps; the one that varies less is the loop's, and its median dates a missed start from the previous
    cycle. A date more than ``sweep_lead`` before the first refresh (a cycle in between not seen), or more
    than ``period_slack`` after it, is not used.
    """
    pairs = [(a, b) for a, b in pairwise(cycles) if b.start_from == "sweep"]
    sleeps = [b.start - a.end for a, b in pairs]
    periods = [b.start - a.start for a, b in pairs if a.start_from == "sweep"]
    if not sleeps:
        return cycles
    from_end = len(periods) < 2 or _spread(sleeps) <= _spread(periods)
    gap = median(sleeps if from_end else periods)
    out = list(cycles)
    for k in range(1, len(out)):
        c, previous = out[k], out[k - 1]
        if c.start_from != "refresh" or c.first_refresh is None:
            continue
        start = (previous.end if from_end else previous.start) + gap
        if c.first_refresh - params.sweep_lead <= start <= c.first_refresh + params.period_slack:
            out[k] = replace(c, start=min(start, c.first_refresh), start_from="period")
    return out


def _lead_starts(cycles: list[InferredCycle]) -> list[InferredCycle]:
    """Cycles whose start is still unknown start the median measured lead (sweep start to first refresh) of
    those whose sweep was caught: the sweep and phase 1 take about as long each cycle."""
    leads = [c.first_refresh - c.start for c in cycles if c.start_from == "sweep" and c.first_refresh is not None]
    if not leads:
        return cycles
    lead = median(leads)
    return [replace(c, start=c.first_refresh - lead, start_from="lead")
            if c.start_from == "refresh" and c.first_refresh is not None else c for c in cycles]


def turnaround(gaps: Sequence[float], share: float = 0.1) -> float:
    """The client's turnaround between two statements of one transaction: the low ``share`` quantile of the
    gaps seen (one statement's end to the next one's arrival), 0 with fewer than five. The low quantile is a
    round trip without the event loop's queueing, as the first statement of a cycle meets it."""
    if len(gaps) < 5:
        return 0.0
    ordered = sorted(gaps)
    return ordered[int(share * (len(ordered) - 1))]


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

    def update(self, backends: dict[int, Backend]) -> list[Transaction]:
        """Absorb one sample ``{pid: (xact_start, state, state_change)}``; the transactions it saw end."""
        closed_before = len(self.transactions)
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
        return self.transactions[closed_before:]

    def forget_before(self, ts: float) -> None:
        """Drop finished transactions that started before ``ts``."""
        self.transactions = [t for t in self.transactions if t.start >= ts]

    def all(self) -> list[Transaction]:
        """Every transaction so far, the ones still open without an end."""
        return [*self.transactions, *(Transaction(s) for s in self.open.values())]


def transactions_from_samples(samples: Sequence[dict[int, Backend]]) -> list[Transaction]:
    """:class:`TransactionTracker` over a list of samples."""
    tracker = TransactionTracker()
    for sample in samples:
        tracker.update(sample)
    return tracker.all()
