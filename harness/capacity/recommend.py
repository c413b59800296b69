"""The smallest settings that meet a cleanup-cycle target, from a sweep table (pure functions).

A row is *feasible* when it was measured (not skipped), its cycle p95 ≤ the target, it had no pool
timeouts and no refresh errors, and ``gateway workers × (pool_size + max_overflow)`` ≤ the database's
connection budget.

Among feasible rows, *smallest* means, in this order:

1. fewest DB connections per gateway worker (``pool_size + max_overflow``);
2. lowest concurrency: the semaphore bound of ``bounded``, the effective concurrency of the others
   (1 for ``sequential`` and ``batched``);
3. fewest executor threads (thread driver; none counts as 0);
4. smallest ``pool_size`` (overflow connections close when idle, pool connections stay);
5. lowest cycle p95.

Session counts beyond the largest measured one are *extrapolated* with the model: each configuration's
row at the largest measured count gives its calibrated refresh and check costs and a correction factor
``max(1, measured p95 / model)``; the extrapolated p95 is ``model(N) × factor``, with the budget's
``max_connections`` and gateway workers in the model. Pool timeouts are not modelled: a configuration
that had none at the largest measured count keeps the same per-refresh wait at larger counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from harness.capacity.model import ModelInput, predict

SETTINGS = ("strategy", "max_concurrent", "pool_size", "max_overflow", "executor_threads", "batch_size")
Row = Mapping[str, Any]


@dataclass(frozen=True)
class Target:
    """What the settings must achieve."""

    cycle_ms: float
    max_db_connections: int
    gateway_workers: int = 1

    def __post_init__(self) -> None:
        if self.cycle_ms <= 0:
            raise ValueError("--target-cycle-ms must be > 0")
        if self.max_db_connections < 1 or self.gateway_workers < 1:
            raise ValueError("--max-db-connections and --gateway-workers must be >= 1")


@dataclass(frozen=True)
class Recommendation:
    """The answer for one (driver, latency, sessions); ``settings`` is empty when nothing qualifies."""

    driver: str
    db_latency_ms: float
    sessions: int
    extrapolated: bool
    settings: dict[str, Any]
    p95_ms: float | None
    connections: int | None
    binding: str
    note: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line: the settings, or why there are none."""
        if not self.settings:
            return self.note
        knobs = ", ".join(f"{k}={v}" for k, v in self.settings.items() if v is not None)
        return f"{knobs} → p95 {self.p95_ms:.0f} ms, {self.connections} connections ({self.binding} binds)"


def connections_per_worker(row: Row) -> int:
    """The connections one gateway worker may open: pool plus overflow."""
    return int(row["pool_size"]) + int(row["max_overflow"])


def concurrency(row: Row) -> int:
    """The semaphore bound of ``bounded``; the effective concurrency of other strategies."""
    return int(row["max_concurrent"]) if row["strategy"] == "bounded" else int(row["c_eff"])


def size_key(row: Row) -> tuple[float, ...]:
    """The order that defines "smallest" (see the module docstring)."""
    return (connections_per_worker(row), concurrency(row), int(row.get("executor_threads") or 0),
            int(row["pool_size"]), float(row["measured_ms_p95"]))


def feasible(row: Row, target: Target) -> bool:
    """Measured, within the target, no pool timeouts or errors, and within the connection budget."""
    p95 = row.get("measured_ms_p95")
    return (
        not row.get("skipped")
        and p95 is not None
        and float(p95) <= target.cycle_ms
        and int(row.get("pool_timeouts") or 0) == 0
        and int(row.get("errors") or 0) == 0
        and target.gateway_workers * connections_per_worker(row) <= target.max_db_connections
    )


def model_input(row: Row, sessions: int, target: Target) -> ModelInput:
    """The model's input for ``row``'s settings at ``sessions``, with the target's connection budget."""
    refresh = row.get("refresh_ms")
    return ModelInput(
        sessions=sessions, refresh_ms=float(refresh) if refresh is not None else float(row["db_latency_ms"]) + 1.0,
        check_ms=float(row.get("check_ms") or 0.0), strategy=str(row["strategy"]), driver=str(row["driver"]),
        max_concurrent=int(row.get("max_concurrent") or 1), executor_threads=int(row.get("executor_threads") or 1),
        pool_size=int(row["pool_size"]), max_overflow=int(row["max_overflow"]),
        max_connections=target.max_db_connections, gateway_workers=target.gateway_workers,
        batch_size=int(row.get("batch_size") or 500),
    )


def extrapolate(row: Row, sessions: int, target: Target) -> dict[str, Any]:
    """``row`` projected to ``sessions`` with the model, scaled by its own measured/model factor."""
    measured = predict(model_input(row, int(row["sessions"]), target)).model_ms
    factor = max(1.0, float(row["measured_ms_p95"]) / measured) if measured > 0 else 1.0
    projected = predict(model_input(row, sessions, target))
    return {**row, "sessions": sessions, "measured_ms_p95": round(projected.model_ms * factor, 3),
            "model_ms": projected.model_ms, "c_eff": projected.c_eff, "binding": projected.binding,
            "extrapolated_from": int(row["sessions"]), "factor": round(factor, 3)}


def _choose(rows: Iterable[Row], target: Target) -> Row | None:
    candidates = [r for r in rows if feasible(r, target)]
    return min(candidates, key=size_key) if candidates else None


def _answer(group: tuple[str, float], sessions: int, rows: Sequence[Row], target: Target,
            extrapolated: bool) -> Recommendation:
    driver, latency = group
    best = _choose(rows, target)
    if best is None:
        return Recommendation(driver, latency, sessions, extrapolated, {}, None, None, "-",
                              f"no measured setting keeps p95 ≤ {target.cycle_ms:g} ms within "
                              f"{target.max_db_connections} connections for {target.gateway_workers} worker(s)")
    note = (f"extrapolated from N={best['extrapolated_from']} (model × {best['factor']:g})" if extrapolated
            else "measured")
    return Recommendation(
        driver, latency, sessions, extrapolated, {k: best.get(k) for k in SETTINGS if best.get(k) is not None},
        float(best["measured_ms_p95"]), target.gateway_workers * connections_per_worker(best),
        str(best["binding"]), note,
    )


def settings_of(row: Row) -> tuple[Any, ...]:
    """The settings that identify one configuration across session counts."""
    return tuple(row.get(k) for k in SETTINGS)


def recommend(rows: Sequence[Row], target: Target, extrapolate_to: Sequence[int] = ()) -> list[Recommendation]:
    """One recommendation per (driver, latency, measured sessions), then per larger ``extrapolate_to`` count."""
    measured = [r for r in rows if not r.get("skipped") and r.get("measured_ms_p95") is not None]
    groups: dict[tuple[str, float], list[Row]] = {}
    for row in measured:
        groups.setdefault((str(row["driver"]), float(row["db_latency_ms"])), []).append(row)
    answers: list[Recommendation] = []
    for group, group_rows in sorted(groups.items()):
        counts = sorted({int(r["sessions"]) for r in group_rows})
        for sessions in counts:
            answers.append(_answer(group, sessions, [r for r in group_rows if r["sessions"] == sessions], target,
                                   extrapolated=False))
        largest: dict[tuple[Any, ...], Row] = {}
        for row in sorted(group_rows, key=lambda r: int(r["sessions"])):
            largest[settings_of(row)] = row
        for sessions in sorted({n for n in extrapolate_to if n > counts[-1]}):
            projected = [extrapolate(r, sessions, target) for r in largest.values()]
            answers.append(_answer(group, sessions, projected, target, extrapolated=True))
    return answers


def recommend_per_strategy(rows: Sequence[Row], target: Target,
                           extrapolate_to: Sequence[int] = ()) -> dict[str, list[Recommendation]]:
    """The same answers with the strategy held fixed: what each strategy needs on its own."""
    strategies = sorted({str(r["strategy"]) for r in rows})
    return {s: recommend([r for r in rows if r["strategy"] == s], target, extrapolate_to) for s in strategies}
