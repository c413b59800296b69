"""Turn what a run collected into the typed sections of ``summary.json`` (pure: nothing read is changed)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gateway_sim.costs import MIN_CPU_SHARE
from gateway_sim.pool_monitor import histogram_percentile, percentile
from harness.capacity.model import model_input, predict
from harness.scenario.calibrate import Calibration
from harness.scenario.collect import Collected
from harness.scenario.results import (
    CleanupSummary,
    CycleModel,
    PoolSummary,
    SessionsSummary,
    Stats,
    WaitStats,
    WorkerPool,
)


def stats(values: Iterable[float | None]) -> Stats:
    """p50/p95/p99/max/mean of ``values`` (None entries dropped); all None when empty."""
    data = [float(v) for v in values if v is not None]
    if not data:
        return Stats()
    return Stats(p50=round(percentile(data, 50), 3), p95=round(percentile(data, 95), 3),
                 p99=round(percentile(data, 99), 3), max=round(max(data), 3), mean=round(sum(data) / len(data), 3))


def cycle_cpu(calibration: Calibration, between: float | None) -> dict[str, float]:
    """The calibrated CPU costs for one cycle: the share of a core left to it is the calibrated share less
    what the gateway's other work (HTTP, streams) took between the previous cycle and this one."""
    cpu = calibration.cpu()
    if between is not None and cpu:
        cpu["cpu_share"] = round(max(MIN_CPU_SHARE, cpu.get("cpu_share", 1.0) - float(between)), 4)
    return cpu


def cycle_model(cycle: Mapping[str, Any], calibration: Calibration, config: Mapping[str, Any],
                max_connections: int) -> CycleModel:
    """The model beside one recorded cycle: its own session counts, the run's calibrated costs.

    :func:`harness.capacity.model.predict` for the cycle's connected and disconnected sessions, with the
    refresh and delete round trips measured by the harness on the run's database path and the CPU costs
    measured in the gateway, less the share of the core the gateway's other work took (:func:`cycle_cpu`). The
    gateway's own ``remove_delete_ms`` (its burst's DELETE, on warm calibration connections over rows it had just
    inserted) is reported, not modelled: it came out at about half of what the cycles' removals took.
    """
    disconnected = int(cycle["removed_disconnected"])
    connected = int(cycle["checked"]) - disconnected
    result = predict(model_input(config, sessions=max(0, connected), refresh_ms=calibration.refresh_ms,
                                 max_connections=max_connections, disconnected=disconnected,
                                 delete_ms=calibration.delete_ms,
                                 cpu=cycle_cpu(calibration, cycle.get("cpu_between_cycles"))))
    model_ms = result.model_ms
    ratio = float(cycle["total_ms"]) / model_ms if model_ms >= 1.0 else None
    return CycleModel(model_ms=round(model_ms, 3), c_eff=result.c_eff, binding=result.binding,
                      model_ratio=None if ratio is None else round(ratio, 4))


def cycle_models(data: Collected, calibration: Calibration | None, config: Mapping[str, Any]) -> list[CycleModel]:
    """The model beside every recorded cycle (zeros and ``unknown`` without a calibration)."""
    if calibration is None:
        return [CycleModel(0.0, 0, "unknown", None) for _ in data.cycles]
    max_connections = data.max_connections or 100
    return [cycle_model(c, calibration, config, max_connections) for c in data.cycles]


def _time_weighted(first: dict[str, Any], last: dict[str, Any], key: str) -> float | None:
    span = float(last.get("uptime_seconds", 0)) - float(first.get("uptime_seconds", 0))
    if span <= 0:
        return None
    return (float(last.get(key, 0)) - float(first.get(key, 0))) / span


def pool_summary(data: Collected, config: Mapping[str, Any]) -> PoolSummary:
    """Pool saturation across workers: peaks, time-weighted means, exhausted fraction, waits, timeouts."""
    per_worker: dict[str, WorkerPool] = {}
    waits: list[int] = []
    for worker, last in data.last_pool.items():
        first = data.first_pool.get(worker, last)
        samples = [s for s in data.pool_samples if s["worker"] == worker]
        cycles = [c for c in data.cycles if c["worker"] == worker]
        last_hist = list(last.get("wait_histogram", []))
        first_hist = list(first.get("wait_histogram") or [0] * len(last_hist))
        hist = [int(b) - int(a) for a, b in zip(first_hist, last_hist, strict=True)]
        waits = [a + b for a, b in zip(waits, hist, strict=True)] if waits else hist
        per_worker[worker] = WorkerPool(
            checked_out_peak=max([s["checked_out"] or 0 for s in samples]
                                 + [c["pool"]["checked_out_peak"] for c in cycles] + [0]),
            checked_out_mean=_round(_time_weighted(first, last, "checked_out_seconds")),
            exhausted_fraction=_round(_time_weighted(first, last, "exhausted_seconds"), 4),
            waiters_peak=max([s["waiters"] or 0 for s in samples]
                             + [c["pool"]["waiters_peak"] for c in cycles] + [0]),
            timeouts=int(last.get("timeouts_total", 0)) - int(first.get("timeouts_total", 0)),
            executor_queue_peak=max([c["pool"]["executor_queue_peak"] for c in cycles] + [0]),
        )
    workers = list(per_worker.values())
    limit = config["pool_size"] + config["max_overflow"]
    gateway_workers = max(1, len(per_worker))
    pg_peak = max((s["total"] for s in data.pg_samples), default=0)
    states = Counter()
    for sample in data.pg_samples:
        for key, value in sample.items():
            if key not in ("t", "total"):
                states[key] = max(states[key], value)
    return PoolSummary(
        size=config["pool_size"],
        max_overflow=config["max_overflow"],
        limit=limit,
        checked_out_peak=max((w.checked_out_peak for w in workers), default=0),
        checked_out_mean=_round(sum(w.checked_out_mean or 0 for w in workers) / gateway_workers),
        exhausted_fraction=max((w.exhausted_fraction or 0 for w in workers), default=0.0),
        waiters_peak=max((w.waiters_peak for w in workers), default=0),
        wait_ms=WaitStats(p50=histogram_percentile(waits, 50) if waits else None,
                          p95=histogram_percentile(waits, 95) if waits else None, acquisitions=sum(waits)),
        timeouts=sum(w.timeouts for w in workers),
        executor_queue_peak=max((w.executor_queue_peak for w in workers), default=0),
        max_connections=data.max_connections,
        total_connections_limit=gateway_workers * limit,
        over_max_connections=data.max_connections is not None and gateway_workers * limit > data.max_connections,
        pg_connections_peak=pg_peak,
        pg_state_peaks=dict(states),
        per_worker=per_worker,
    )


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def zombie_summary(client_ends: Sequence[dict[str, Any]], removals: dict[str, dict[str, Any]],
                   run_end: float) -> dict[str, Any]:
    """Zombie time: from the client's close to the gateway's removal, per session.

    A session the gateway still holds at the end counts until ``run_end`` (and as unremoved).
    """
    spans: list[float] = []
    by_how: dict[str, list[float]] = {}
    intervals: list[tuple[float, float]] = []
    unremoved = 0
    for end in client_ends:
        removed = removals.get(end["session_id"])
        closed_at = float(end["closed_at"])
        if removed is None:
            unremoved += 1
            stop = run_end
        else:
            stop = float(removed["t"])
        span = max(0.0, stop - closed_at) * 1000.0
        spans.append(span)
        by_how.setdefault(f"{end.get('transport', '?')}:{end.get('how', '?')}", []).append(span)
        intervals.append((closed_at, max(closed_at, stop)))
    points = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    open_now = peak = 0
    for _, delta in points:
        open_now += delta
        peak = max(peak, open_now)
    overall = stats(spans)
    return {
        "zombie_ms": {"p50": overall.p50, "p95": overall.p95, "max": overall.max},
        "zombie_ms_by_kind": {k: {"p50": stats(v).p50, "p95": stats(v).p95, "count": len(v)}
                              for k, v in sorted(by_how.items())},
        "zombies_peak": peak,
        "zombies_unremoved": unremoved,
        "client_ends": dict(Counter(f"{e.get('transport', '?')}:{e.get('how', '?')}" for e in client_ends)),
    }


def sessions_summary(data: Collected, gateway_events: list[dict[str, Any]], client_ends: list[dict[str, Any]],
                     leaked: int | None, rows_after_shutdown: int | None, run_end_unix: float,
                     rows_before_shutdown: int | None = None) -> SessionsSummary:
    """Created/removed by reason, active peak, accounting balance, leaks and zombie time."""
    removals = {e["session_id"]: e for e in gateway_events if e.get("event") == "removed"}
    created = sum(s.get("created", 0) for s in data.last_sessions.values())
    removed = sum(s.get("removed", 0) for s in data.last_sessions.values())
    active = sum(s.get("active", 0) for s in data.last_sessions.values())
    by_reason: Counter[str] = Counter()
    for s in data.last_sessions.values():
        by_reason.update(s.get("removed_by_reason", {}))
    active_by_t: dict[float, int] = {}
    for sample in data.pool_samples:
        active_by_t[sample["t"]] = active_by_t.get(sample["t"], 0) + int(sample["sessions_active"] or 0)
    # Samples of different workers land at slightly different t: the per-worker peak sum bounds it.
    per_worker_peak: dict[str, int] = {}
    for sample in data.pool_samples:
        per_worker_peak[sample["worker"]] = max(per_worker_peak.get(sample["worker"], 0),
                                                int(sample["sessions_active"] or 0))
    return SessionsSummary(
        created=created,
        removed=removed,
        active_at_end=active,
        balanced=created == removed + active,
        removed_by_reason=dict(by_reason),
        active_peak=max(active_by_t.values(), default=0) if len(per_worker_peak) <= 1
        else sum(per_worker_peak.values()),
        leaked=leaked,
        rows_after_shutdown=rows_after_shutdown,
        **zombie_summary(client_ends, removals, run_end_unix),
        rows_before_shutdown=rows_before_shutdown,
    )


def cleanup_summary(data: Collected, calibration: Calibration | None, models: Sequence[CycleModel]) -> CleanupSummary:
    """Cycle durations per phase, counts over the run, and the model beside each cycle (``models``, one per
    cycle, from :func:`cycle_models`)."""
    bindings = Counter(m.binding for m in models)
    return CleanupSummary(
        cycles=len(data.cycles),
        cycles_by_worker=dict(Counter(c["worker"] for c in data.cycles)),
        total_ms=stats(c["total_ms"] for c in data.cycles),
        expiry_ms=stats(c["expiry_ms"] for c in data.cycles),
        phase1_ms=stats(c["phase1_ms"] for c in data.cycles),
        phase2_ms=stats(c["phase2_ms"] for c in data.cycles),
        model_ms=stats(m.model_ms for m in models),
        model_ratio=stats(m.model_ratio for m in models),
        binding=bindings.most_common(1)[0][0] if bindings and calibration else None,
        calibration=calibration.as_dict() if calibration else None,
        sessions_checked=stats(c["checked"] for c in data.cycles),
        refreshed=sum(c["refreshed"] for c in data.cycles),
        removed_disconnected=sum(c["removed_disconnected"] for c in data.cycles),
        removed_missing=sum(c["removed_missing"] for c in data.cycles),
        expired=sum(c["expired"] for c in data.cycles),
        refresh_errors=sum(c["refresh_errors"] for c in data.cycles),
        cycle_errors=sum(1 for c in data.cycles if c.get("error")),
        max_inflight=max((c["max_inflight"] for c in data.cycles), default=0),
    )


def cycle_rows(cycles: Sequence[Mapping[str, Any]], models: Sequence[CycleModel]) -> list[dict[str, Any]]:
    """``cycles.csv``: each cycle record, its pool window as ``pool_*`` columns, and the model beside it."""
    return [{k: v for k, v in c.items() if k != "pool"} | {f"pool_{k}": v for k, v in c["pool"].items()}
            | {"model_ms": m.model_ms, "c_eff": m.c_eff, "binding": m.binding, "model_ratio": m.model_ratio}
            for c, m in zip(cycles, models, strict=True)]
