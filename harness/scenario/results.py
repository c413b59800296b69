"""The typed results of a run: one frozen dataclass per ``summary.json`` section.

Each serializes with :func:`to_json` to the keys ``summary.json`` has always had (pinned by the golden test).
Maps whose keys are data (workers, request names, reasons) stay dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

Json = dict[str, Any]


def to_json(value: Any) -> Any:
    """A dataclass (nested ones included) as plain JSON data, field names as keys."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


@dataclass(frozen=True)
class Stats:
    """p50 / p95 / p99 / max / mean of a series (all ``None`` when it is empty)."""

    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None
    mean: float | None = None


@dataclass(frozen=True)
class CycleModel:
    """The model beside one recorded cycle: its prediction, concurrency, binding constraint and the ratio."""

    model_ms: float
    c_eff: int
    binding: str
    model_ratio: float | None


@dataclass(frozen=True)
class CleanupSummary:
    """Cycle durations per phase, counts over the run, and the model beside each cycle."""

    cycles: int
    cycles_by_worker: dict[str, int]
    total_ms: Stats
    expiry_ms: Stats
    phase1_ms: Stats
    phase2_ms: Stats
    model_ms: Stats
    model_ratio: Stats
    binding: str | None
    calibration: Json | None
    sessions_checked: Stats
    refreshed: int
    removed_disconnected: int
    removed_missing: int
    expired: int
    refresh_errors: int
    cycle_errors: int
    max_inflight: int


@dataclass(frozen=True)
class WorkerPool:
    """One gateway worker's pool over the run."""

    checked_out_peak: int
    checked_out_mean: float | None
    exhausted_fraction: float | None
    waiters_peak: int
    timeouts: int
    executor_queue_peak: int


@dataclass(frozen=True)
class WaitStats:
    """Pool checkout waits: percentiles from the gateways' histograms, and how many checkouts."""

    p50: float | None
    p95: float | None
    acquisitions: int


@dataclass(frozen=True)
class PoolSummary:
    """Pool saturation across workers, and the database's own view of the connections."""

    size: int
    max_overflow: int
    limit: int
    checked_out_peak: int
    checked_out_mean: float | None
    exhausted_fraction: float
    waiters_peak: int
    wait_ms: WaitStats
    timeouts: int
    executor_queue_peak: int
    max_connections: int | None
    total_connections_limit: int
    over_max_connections: bool
    pg_connections_peak: int
    pg_state_peaks: dict[str, int]
    per_worker: dict[str, WorkerPool]


@dataclass(frozen=True)
class SessionsSummary:
    """Session accounting, leaks and zombie time."""

    created: int
    removed: int
    active_at_end: int
    balanced: bool
    removed_by_reason: dict[str, int]
    active_peak: int
    leaked: int | None
    rows_after_shutdown: int | None
    zombie_ms: Json
    zombie_ms_by_kind: dict[str, Json]
    zombies_peak: int
    zombies_unremoved: int
    client_ends: dict[str, int]
    rows_before_shutdown: int | None = None


@dataclass(frozen=True)
class LoadSummary:
    """The load side from Locust's statistics (CLEANUP rows apart)."""

    requests: int
    failures: int
    failure_ratio: float | None
    rps: float
    response_ms: Json
    by_name: dict[str, Json]
    cleanup_events: dict[str, Json]
    error: str | None = None

    def to_json(self) -> Json:
        """Today's keys: ``error`` only when Locust wrote no statistics."""
        out = to_json(self)
        if self.error is None:
            out.pop("error")
        return out


@dataclass(frozen=True)
class RecoveryCycle:
    """The first cycle of a worker after a fault's window."""

    worker: str
    cycle: int
    refresh_errors: int
    error: str | None


@dataclass(frozen=True)
class FaultResult:
    """One injected fault: its window, what cleanup did in it, and whether the next cycle was clean."""

    spec: str
    kind: str
    value: float | None
    start_t: float | None
    end_t: float | None
    applied: bool
    error: str | None
    detail: Json | None = None
    cycles_during: int | None = None
    refresh_errors_during: int | None = None
    cycle_errors_during: int | None = None
    removed_missing_during: int | None = None
    recovery_cycles: list[RecoveryCycle] | None = None
    recovered: bool | None = None

    def to_json(self) -> Json:
        """Today's keys: a fault that never started has only its spec, window and error."""
        out = to_json(self)
        if not self.applied:
            for name in ("detail", "cycles_during", "refresh_errors_during", "cycle_errors_during",
                         "removed_missing_during", "recovery_cycles", "recovered"):
                out.pop(name)
        return out


@dataclass(frozen=True)
class SoakWorker:
    """One worker's resource figures: first and last window of the load, baseline and after the drain."""

    window_s: float
    rss_mb_first: float | None
    rss_mb_last: float | None
    rss_growth: float | None
    malloc_in_use_mb_first: float | None
    malloc_in_use_mb_last: float | None
    malloc_free_mb_first: float | None
    malloc_free_mb_last: float | None
    fds_first: float | None
    fds_last: float | None
    tasks_first: float | None
    tasks_last: float | None
    net_fds_baseline: int | None
    net_fds_drained: int | None
    tasks_baseline: int | None
    tasks_drained: int | None
    sessions_drained: int | None


@dataclass(frozen=True)
class SoakSummary:
    """The soak's figures per worker, its checks, and the raw process samples."""

    samples: int
    accounting_samples: int
    unbalanced_samples: int
    leaked: int | None
    workers: dict[str, SoakWorker]
    checks: dict[str, bool]
    ok: bool
    process_samples: list[Json] = field(default_factory=list)


@dataclass(frozen=True)
class RunSummary:
    """``summary.json``: the config, versions, the core sections, warnings and what extensions added."""

    config: Json
    versions: Json
    cleanup: CleanupSummary
    pool: PoolSummary
    sessions: SessionsSummary
    locust: LoadSummary
    warnings: list[str]
    faults: list[FaultResult] | None = None
    soak: SoakSummary | None = None

    def to_json(self) -> Json:
        """The document as written; sections no extension produced are left out."""
        out: Json = {"config": self.config, "versions": self.versions, "cleanup": to_json(self.cleanup),
                     "pool": to_json(self.pool), "sessions": to_json(self.sessions),
                     "locust": self.locust.to_json(), "warnings": list(self.warnings)}
        if self.faults is not None:
            out["faults"] = [f.to_json() for f in self.faults]
        if self.soak is not None:
            out["soak"] = to_json(self.soak)
        return out


__all__ = ["CleanupSummary", "CycleModel", "FaultResult", "LoadSummary", "PoolSummary", "RecoveryCycle",
           "RunSummary", "SessionsSummary", "SoakSummary", "SoakWorker", "Stats", "WaitStats", "WorkerPool",
           "to_json"]
