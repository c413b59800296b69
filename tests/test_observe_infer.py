"""The pure parts of ``harness observe``: cycle inference, row and transaction tracking, scoring."""

from __future__ import annotations

import random
from dataclasses import replace

from harness.observe.accuracy import TrueCycle, match, score, within
from harness.observe.infer import (
    ActivitySample,
    InferenceParams,
    InferredCycle,
    RefreshEvent,
    Transaction,
    TransactionTracker,
    Vanished,
    infer_cycles,
    turnaround,
)
from harness.observe.rows import RowTracker


def bounded_cycle(start: float, sessions: int, concurrency: int, refresh_s: float) -> list[RefreshEvent]:
    """Phase 2 of the bounded strategy: waves of ``concurrency`` single-row refreshes, ``refresh_s`` apart."""
    events = []
    for i in range(sessions):
        wave, slot = divmod(i, concurrency)
        events.append(RefreshEvent(start + wave * refresh_s + slot * 0.0002))
    return events


def touches(rate: float, seconds: float, seed: int = 7) -> list[RefreshEvent]:
    """Request touches: a Poisson process of single-row writes."""
    rng = random.Random(seed)
    t, out = 0.0, []
    while True:
        t += rng.expovariate(rate)
        if t >= seconds:
            return out
        out.append(RefreshEvent(t))


def test_bounded_cycles_are_found_among_touches() -> None:
    starts = [10.0, 16.0, 22.0, 28.0]
    events = [e for s in starts for e in bounded_cycle(s, 100, 20, 0.05)] + touches(5.0, 40.0)
    cycles = infer_cycles(events)
    assert len(cycles) == len(starts)
    for c, start in zip(cycles, starts, strict=True):
        # a touch at most wave_gap before the first wave joins it; else the start is exact
        assert start - InferenceParams().wave_gap <= c.start <= start
        # 5 waves: last start at +0.2 s; no transaction seen, so the end is the last start
        assert 0.2 <= c.end - start < 0.26
        assert c.refreshed >= 100
        assert c.waves >= 5


def test_end_comes_from_a_caught_transaction() -> None:
    events = bounded_cycle(5.0, 40, 20, 0.05)
    last = max(e.ts for e in events)
    caught = [Transaction(5.0, 5.052), Transaction(last, last + 0.051)]
    (cycle,) = infer_cycles(events, caught)
    assert cycle.end_from == "caught"
    assert abs(cycle.end - (last + 0.051)) < 1e-9
    assert abs(cycle.duration_ms - (last + 0.051 - 5.0) * 1000) < 1e-3


def test_end_is_estimated_from_the_median_refresh_when_the_last_was_not_caught() -> None:
    events = bounded_cycle(5.0, 60, 20, 0.05) + bounded_cycle(12.0, 60, 20, 0.05)
    caught = [Transaction(5.0, 5.04), Transaction(5.05, 5.09), Transaction(12.0, 12.04)]
    cycles = infer_cycles(events, caught)
    assert [c.end_from for c in cycles] == ["estimated", "estimated"]
    last = max(e.ts for e in events if e.ts < 10)
    assert abs(cycles[0].end - (last + 0.04)) < 1e-6


def test_batched_chunks_are_heavy_waves() -> None:
    events = [RefreshEvent(3.0, 500), RefreshEvent(3.06, 500), RefreshEvent(3.12, 120), RefreshEvent(9.0, 500)]
    cycles = infer_cycles(events + touches(3.0, 12.0))
    assert [c.start for c in cycles] == [3.0, 9.0]
    assert cycles[0].last_refresh == 3.12
    assert cycles[0].refreshed >= 1120


def test_touches_alone_make_no_cycle() -> None:
    assert infer_cycles(touches(10.0, 120.0, seed=3)) == []


def test_a_touch_just_before_or_after_a_cycle_does_not_stretch_it() -> None:
    events = [*bounded_cycle(10.0, 100, 20, 0.05), RefreshEvent(9.9), RefreshEvent(10.45)]
    (cycle,) = infer_cycles(events)
    assert cycle.start == 10.0
    assert cycle.last_refresh < 10.21


def test_cycles_closer_than_max_gap_merge_and_farther_ones_do_not() -> None:
    events = bounded_cycle(1.0, 20, 20, 0.05) + bounded_cycle(1.3, 20, 20, 0.05) + bounded_cycle(3.0, 20, 20, 0.05)
    assert len(infer_cycles(events)) == 2
    assert len(infer_cycles(events, params=InferenceParams(max_gap=0.1))) == 3


def test_vanished_rows_split_into_expired_and_removed_one_by_one() -> None:
    events = bounded_cycle(10.0, 40, 20, 0.05) + bounded_cycle(20.0, 40, 20, 0.05)
    vanished = [
        Vanished(19.96, 20.01, last_accessed=2.0),   # not written since before the previous cycle: expired
        Vanished(19.96, 20.01, last_accessed=10.05),  # refreshed by the previous cycle: phase 1 removed it
        Vanished(15.00, 15.05, last_accessed=10.05),  # gone between cycles: a client's own close
    ]
    first, second = infer_cycles(events, (), vanished)
    assert (first.expired, first.removed_one_by_one) == (None, None)
    assert (second.expired, second.removed_one_by_one) == (1, 1)


def test_transaction_tracker_ends_at_the_idle_state_change() -> None:
    tracker = TransactionTracker()
    tracker.update({1: (100.0, "active", 100.0), 2: (100.1, "idle in transaction", 100.1)})
    tracker.update({1: (None, "idle", 100.06), 2: (100.3, "active", 100.3)})
    tracker.update({1: (None, "idle", 100.06)})
    assert sorted(tracker.all(), key=lambda t: t.start) == [
        Transaction(100.0, 100.06), Transaction(100.1, None), Transaction(100.3, None)]


def test_row_tracker_sees_writes_inserts_and_deletions() -> None:
    tracker = RowTracker(since=50.0)
    tracker.update(100.0, [("a", 1.0, 1.0), ("b", 1.0, 60.0), ("c", 2.0, 2.0)])
    tracker.update(100.1, [("a", 1.0, 100.05), ("b", 1.0, 60.0), ("d", 100.08, 100.08), ("e", 99.0, 100.09)])
    assert tracker.inserted == 2
    assert sorted(tracker.writes) == [60.0, 100.05, 100.09]  # b written while watching; d is a plain insert
    assert tracker.vanished == [Vanished(100.0, 100.1, 2.0)]
    assert tracker.rows_peak == 4


def test_score_matches_one_to_one_and_checks_the_tolerance() -> None:
    truth = [TrueCycle(10.0, 200.0), TrueCycle(20.0, 1000.0), TrueCycle(30.0, 100.0)]
    observed = [
        InferredCycle(10.01, 10.19, 10.15, 100, 5, None, None, "refresh", "estimated"),
        InferredCycle(20.02, 20.9, 20.8, 100, 5, 0, 0, "refresh", "caught"),
        InferredCycle(40.0, 40.1, 40.1, 100, 5, 0, 0, "refresh", "caught"),
    ]
    assert len(match(truth, observed)) == 2
    result = score(truth, observed, (0.0, 100.0))
    assert (result.true_cycles, result.observed_cycles, result.matched) == (3, 3, 2)
    assert result.recall == round(2 / 3, 4) and result.precision == round(2 / 3, 4)
    assert result.within_tolerance == 0.5  # 20 ms off a 200 ms cycle: yes; 120 ms off 1000 ms: no
    assert within(1000.0, 1090.0) and within(100.0, 149.0) and not within(100.0, 151.0)


def test_a_stall_inside_a_cycle_is_bridged_when_cycles_are_seconds_apart() -> None:
    starts = [0.0, 10.0, 20.0, 30.0, 40.0]
    events = [e for s in starts for e in bounded_cycle(s, 100, 20, 0.05)]
    events += bounded_cycle(20.9, 100, 20, 0.05)  # cycle 3 stalls 0.7 s, then goes on
    cycles = infer_cycles(events)
    assert [round(c.start, 3) for c in cycles] == starts
    assert 1.1 <= cycles[2].last_refresh - cycles[2].start < 1.11


def test_an_expiry_sweep_caught_in_flight_starts_the_cycle() -> None:
    events = bounded_cycle(5.0, 40, 20, 0.05) + bounded_cycle(10.0, 40, 20, 0.05)
    first, second = infer_cycles(events, sweeps=[4.93, 9.0, 9.96])
    assert (first.start, first.start_from) == (4.93, "sweep")
    assert (second.start, second.start_from) == (9.96, "sweep")  # 9.0 is too early to belong to it


def test_a_cycle_whose_sweep_was_missed_starts_the_measured_lead_before_its_first_refresh() -> None:
    events = [e for s in (5.0, 10.0) for e in bounded_cycle(s, 40, 20, 0.05)]
    first, second = infer_cycles(events, sweeps=[4.9])  # a lead of 100 ms; the second sweep missed
    assert (first.start_from, second.start_from) == ("sweep", "lead")
    assert abs(second.start - (10.0 - 0.1)) < 1e-9
    assert second.first_refresh == 10.0


def _sleep_loop(sizes: list[int], sleep: float, lead: float) -> tuple[list[RefreshEvent], list[float]]:
    """Cycles of ``sizes`` sessions, each ``sleep`` after the previous one's end; sweeps ``lead`` before."""
    events: list[RefreshEvent] = []
    sweeps: list[float] = []
    t = 5.0
    for size in sizes:
        sweeps.append(t)
        cycle = bounded_cycle(t + lead, size, 20, 0.05)
        events += cycle
        t = cycle[-1].ts + sleep
    return events, sweeps


def test_a_missed_sweep_is_dated_by_the_sleep_after_the_previous_cycle() -> None:
    events, sweeps = _sleep_loop([40, 200, 60, 120], sleep=2.0, lead=0.1)
    cycles = infer_cycles(events, sweeps=sweeps[:3])  # the fourth sweep missed
    assert [c.start_from for c in cycles] == ["sweep", "sweep", "sweep", "period"]
    assert abs(cycles[3].start - sweeps[3]) < 1e-9  # not the lead: the sleep is what the loop keeps


def test_a_missed_sweep_is_dated_by_the_period_of_a_fixed_rate_loop() -> None:
    sizes, events, sweeps = [40, 200, 60, 120], [], []
    for k, size in enumerate(sizes):  # a start every 3 s, whatever each cycle lasts
        sweeps.append(5.0 + 3.0 * k)
        events += bounded_cycle(sweeps[-1] + 0.1, size, 20, 0.05)
    cycles = infer_cycles(events, sweeps=sweeps[:3])
    assert cycles[3].start_from == "period" and abs(cycles[3].start - sweeps[3]) < 1e-9


def test_a_period_that_lands_far_from_the_first_refresh_is_not_used() -> None:
    events, sweeps = _sleep_loop([40] * 7, sleep=2.0, lead=0.1)
    events = [e for e in events if not sweeps[5] <= e.ts < sweeps[6]]  # the sixth cycle not seen at all
    cycles = infer_cycles(events, sweeps=sweeps[:5])
    assert len(cycles) == 6 and cycles[5].start_from == "lead"
    assert abs(cycles[5].start - sweeps[6]) < 1e-9


def test_a_caught_sweep_starts_one_turnaround_before_the_database_saw_it() -> None:
    events = bounded_cycle(5.0, 40, 20, 0.05)
    (cycle,) = infer_cycles(events, sweeps=[4.95], turnaround=0.03)
    assert cycle.start_from == "sweep" and abs(cycle.start - 4.92) < 1e-9


def test_turnaround_is_a_low_quantile_of_the_gaps_and_zero_without_enough() -> None:
    assert turnaround([0.05, 0.06]) == 0.0
    gaps = [0.05 + 0.001 * i for i in range(10)] + [0.4, 0.9]
    assert abs(turnaround(gaps) - 0.051) < 1e-12


def test_a_cycle_ends_with_its_own_last_transaction_not_with_another_backend_going_idle() -> None:
    events = bounded_cycle(5.0, 40, 20, 0.05)
    last = max(e.ts for e in events)
    activity = [ActivitySample(last + 0.005, open_starts=(last,)),
                ActivitySample(last + 0.08, idle_ends=(last + 0.02, last + 0.07),  # a touch started after it
                               closed=(Transaction(last, last + 0.02), Transaction(last + 0.05, last + 0.07)))]
    (cycle,) = infer_cycles(events, activity=activity)
    assert cycle.end_from == "activity" and abs(cycle.end - (last + 0.02)) < 1e-9
    (blind,) = infer_cycles(events, activity=[activity[0], replace(activity[1], closed=())])
    assert abs(blind.end - (last + 0.07)) < 1e-9  # without the pairing, the latest idle is all there is
