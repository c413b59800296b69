"""Score inferred cycles against the gateway's own cycle records (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway_sim.pool_monitor import percentile
from harness.observe.infer import InferredCycle

DURATION_TOLERANCE = 0.10
DURATION_FLOOR_MS = 50.0


@dataclass(frozen=True)
class TrueCycle:
    """A cycle as the gateway recorded it: start (epoch s) and duration."""

    start: float
    total_ms: float

    @property
    def end(self) -> float:
        return self.start + self.total_ms / 1000.0

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> TrueCycle:
        """From one ``/admin/cycles`` record."""
        return cls(datetime.fromisoformat(record["started_at"]).timestamp(), float(record["total_ms"]))


@dataclass(frozen=True)
class Score:
    """Recall, precision and duration errors of one comparison."""

    true_cycles: int
    observed_cycles: int
    matched: int
    recall: float | None
    precision: float | None
    error_ms_p50: float | None
    error_ms_p95: float | None
    within_tolerance: float | None
    """Share of matched cycles within 10 % or 50 ms of the true duration."""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return min(a1, b1) - max(a0, b0)


def match(truth: Sequence[TrueCycle], observed: Sequence[InferredCycle], slack: float = 0.1
          ) -> list[tuple[TrueCycle, InferredCycle]]:
    """Pairs of a true and an observed cycle whose spans overlap (or lie within ``slack`` s), one to one."""
    pairs: list[tuple[float, int, int]] = []
    for i, t in enumerate(truth):
        for j, o in enumerate(observed):
            ov = _overlap(t.start - slack, t.end + slack, o.start, o.end)
            if ov >= 0:
                pairs.append((-ov, i, j))
    used_t: set[int] = set()
    used_o: set[int] = set()
    out: list[tuple[TrueCycle, InferredCycle]] = []
    for _, i, j in sorted(pairs):
        if i not in used_t and j not in used_o:
            used_t.add(i)
            used_o.add(j)
            out.append((truth[i], observed[j]))
    return sorted(out, key=lambda p: p[0].start)


def within(true_ms: float, observed_ms: float) -> bool:
    """Within 10 % of the true duration or 50 ms of it."""
    error = abs(observed_ms - true_ms)
    return error <= DURATION_FLOOR_MS or error <= DURATION_TOLERANCE * true_ms


def score(truth: Sequence[TrueCycle], observed: Sequence[InferredCycle], window: tuple[float, float]) -> Score:
    """Compare the cycles that lie wholly inside the observation ``window`` (epoch s).

    Matching runs on all cycles first, so an observed cycle whose true cycle ran past the window's edge is
    neither a match nor an invention.
    """
    lo, hi = window
    pairs = match(truth, observed)
    partner = {id(o): t for t, o in pairs}
    inside_t = [t for t in truth if t.start >= lo and t.end <= hi]
    inside_ids = {id(t) for t in inside_t}
    inside_o = [o for o in observed if o.start >= lo and o.end <= hi
                and (id(o) not in partner or id(partner[id(o)]) in inside_ids)]
    pairs = [(t, o) for t, o in pairs if id(t) in inside_ids and o in inside_o]
    errors = [abs(o.duration_ms - t.total_ms) for t, o in pairs]
    return Score(
        true_cycles=len(inside_t), observed_cycles=len(inside_o), matched=len(pairs),
        recall=round(len(pairs) / len(inside_t), 4) if inside_t else None,
        precision=round(len(pairs) / len(inside_o), 4) if inside_o else None,
        error_ms_p50=round(percentile(errors, 50), 3) if errors else None,
        error_ms_p95=round(percentile(errors, 95), 3) if errors else None,
        within_tolerance=round(sum(within(t.total_ms, o.duration_ms) for t, o in pairs) / len(pairs), 4)
        if pairs else None,
    )
