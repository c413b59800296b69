"""An observation as ``harness run``'s files: ``summary.json`` (``"source": "observed"``), ``cycles.csv``,
``pool.csv``, ``pg_activity.csv`` and ``report.html``. What the database cannot show is ``null``."""

from __future__ import annotations

import html
import json
from collections import Counter
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

from harness.files import write_csv, write_json
from harness.observe.infer import InferredCycle
from harness.observe.sampler import Observation
from harness.scenario.collect import Collected
from harness.scenario.manifest import build_manifest, package_versions
from harness.scenario.results import to_json
from harness.scenario.summarize import stats as typed_stats

SOURCE = "observed"


def stats(values: Any) -> dict[str, float | None]:
    """The run's p50/p95/p99/max/mean of ``values``, as ``summary.json`` writes them."""
    return dict(to_json(typed_stats(values)))


_NULL_STATS = stats([])


def cycle_rows(obs: Observation, cycles: list[InferredCycle]) -> list[dict[str, Any]]:
    """One ``cycles.csv`` row per inferred cycle (``t`` in seconds since the observation started)."""
    rows = []
    for number, c in enumerate(cycles, start=1):
        peak = max((n for t, n in obs.in_transaction if c.start <= t <= c.end), default=0)
        rows.append({
            "worker": "db", "cycle": number, "t": round(c.end - obs.started_at, 3),
            "started_at": _iso(c.start), "start_unix": round(c.start, 6), "end_unix": round(c.end, 6),
            "total_ms": c.duration_ms, "expiry_ms": None, "phase1_ms": None, "phase2_ms": None,
            "refreshed": c.refreshed, "waves": c.waves, "expired": c.expired,
            "removed_disconnected": c.removed_one_by_one, "removed_missing": None, "refresh_errors": None,
            "max_inflight": peak, "start_from": c.start_from, "end_from": c.end_from, "source": SOURCE,
        })
    return rows


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def _sum_known(values: list[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _pool(obs: Observation) -> dict[str, Any]:
    states: Counter[str] = Counter()
    for sample in obs.pg_samples:
        for key, value in sample.items():
            if key not in ("t", "total"):
                states[key] = max(states[key], value)
    busy = [n for _, n in obs.in_transaction]
    return {
        "size": None, "max_overflow": None, "limit": None,
        "checked_out_peak": None, "checked_out_mean": None, "exhausted_fraction": None,
        "waiters_peak": None, "wait_ms": {"p50": None, "p95": None, "acquisitions": None},
        "timeouts": None, "executor_queue_peak": None,
        "max_connections": obs.max_connections, "total_connections_limit": None, "over_max_connections": None,
        "pg_connections_peak": max((s["total"] for s in obs.pg_samples), default=0),
        "pg_state_peaks": dict(states),
        "pg_in_transaction_peak": max(busy, default=0),
        "pg_in_transaction_mean": round(sum(busy) / len(busy), 3) if busy else None,
        "per_worker": {},
    }


def _table_deltas(obs: Observation) -> dict[str, int] | None:
    a, b = obs.table_stats_start, obs.table_stats_end
    if a is None or b is None:
        return None
    return {k: b[k] - a[k] for k in a}


def build_summary(obs: Observation, cycles: list[InferredCycle], config: dict[str, Any],
                  warnings: list[str] | None = None) -> dict[str, Any]:
    """``summary.json`` with today's keys; unknowable ones are null."""
    rows = cycle_rows(obs, cycles)
    seconds = max(0.0, obs.ended_at - obs.started_at)
    polls = len(obs.pg_samples)
    removed = len(obs.rows.vanished)
    return {
        "source": SOURCE,
        "config": config,
        "versions": package_versions(),
        "cleanup": {
            "cycles": len(cycles),
            "cycles_by_worker": {"db": len(cycles)} if cycles else {},
            "total_ms": stats(c.duration_ms for c in cycles),
            "expiry_ms": dict(_NULL_STATS), "phase1_ms": dict(_NULL_STATS), "phase2_ms": dict(_NULL_STATS),
            "model_ms": dict(_NULL_STATS), "model_ratio": dict(_NULL_STATS),
            "binding": None, "calibration": None,
            "sessions_checked": dict(_NULL_STATS),
            "refreshed": sum(c.refreshed for c in cycles),
            "removed_disconnected": _sum_known([c.removed_one_by_one for c in cycles]),
            "removed_missing": None,
            "expired": _sum_known([c.expired for c in cycles]),
            "refresh_errors": None,
            "cycle_errors": None,
            "max_inflight": max((r["max_inflight"] for r in rows), default=0),
            "period_s": stats(b.start - a.start for a, b in pairwise(cycles)),
            "end_caught": sum(1 for c in cycles if c.end_from == "caught"),
        },
        "pool": _pool(obs),
        "sessions": {
            "created": obs.rows.inserted, "removed": removed, "active_at_end": len(obs.rows.rows),
            "balanced": None, "removed_by_reason": {}, "active_peak": obs.rows.rows_peak,
            "leaked": None, "rows_after_shutdown": None, "rows_before_shutdown": None,
            "zombie_ms": {"p50": None, "p95": None, "max": None}, "zombies_peak": None,
        },
        "locust": {"requests": None, "failures": None, "failure_ratio": None, "rps": None, "response_ms": {},
                   "by_name": {}},
        "observed": {
            "seconds": round(seconds, 3),
            "polls": polls,
            "poll_hz": round(polls / seconds, 2) if seconds > 0 else None,
            "poll_errors": obs.poll_errors,
            "application_name": obs.application_name,
            "refresh_writes": sum(obs.rows.writes.values()),
            "transactions_seen": len(obs.transactions.all()),
            "table_stats": _table_deltas(obs),
        },
        "warnings": list(warnings or []),
    }


def _collected(obs: Observation, rows: list[dict[str, Any]]) -> Collected:
    """The observation in the shape the run report draws."""
    data = Collected(started_at=obs.started_at)
    data.cycles = rows
    data.pg_samples = list(obs.pg_samples)
    data.max_connections = obs.max_connections
    return data


def _method_section(summary: dict[str, Any]) -> str:
    o = summary["observed"]
    return (f"<h2>Observed from the database</h2><p>Cycles inferred from <code>mcp_sessions</code> and "
            f"<code>pg_stat_activity</code> alone: {o['polls']} polls at {o['poll_hz']} Hz over {o['seconds']} s, "
            f"{o['refresh_writes']} row writes. Phase timings, pool gauges, refresh errors and the model are not "
            "visible from the database and are left empty (see docs/observe.md).</p>"
            f"<p>pg_stat_user_tables deltas: <code>{html.escape(json.dumps(o['table_stats']))}</code></p>")


def write_results(out_dir: Path, summary: dict[str, Any], obs: Observation, cycles: list[InferredCycle]) -> None:
    """Write every file of an observation into ``out_dir``."""
    from harness.report.run_report import write_report

    out_dir.mkdir(parents=True, exist_ok=True)
    rows = cycle_rows(obs, cycles)
    write_json(out_dir / "summary.json", summary)
    write_json(out_dir / "manifest.json", build_manifest({"config": summary["config"]}))
    write_csv(out_dir / "cycles.csv", rows)
    write_csv(out_dir / "pool.csv", obs.pg_samples)
    write_csv(out_dir / "pg_activity.csv", obs.pg_samples)
    (out_dir / "report.html").write_text(write_report(summary, _collected(obs, rows), [_method_section(summary)]),
                                         encoding="utf-8")
