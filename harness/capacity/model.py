"""The cleanup cycle-time model and the constraint that binds its concurrency (pure functions).

    cycle ≈ N × check + ceil(N / c_eff) × L_refresh
    c_eff = min(max_concurrent, executor threads (thread driver), pool_size + max_overflow,
                (max_connections − reserved) / gateway workers)

``batched`` sends one statement per chunk: ``N × check + ceil(N / batch_size) × L_refresh``;
``sequential`` has c_eff = 1; ``gather`` has no semaphore.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

BINDINGS = ("semaphore", "executor", "pool", "max_connections", "none")
# Postgres keeps superuser_reserved_connections (3) back from ordinary clients.
DEFAULT_RESERVED_CONNECTIONS = 3


@dataclass(frozen=True)
class ModelInput:
    """Everything the model needs for one configuration."""

    sessions: int
    refresh_ms: float
    strategy: str = "bounded"
    driver: str = "async"
    max_concurrent: int = 20
    executor_threads: int | None = None
    pool_size: int = 20
    max_overflow: int = 10
    max_connections: int = 100
    reserved_connections: int = DEFAULT_RESERVED_CONNECTIONS
    gateway_workers: int = 1
    batch_size: int = 500
    check_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.sessions < 0:
            raise ValueError("sessions must be >= 0")
        if self.refresh_ms < 0 or self.check_ms < 0:
            raise ValueError("latencies must be >= 0")
        for name in ("max_concurrent", "pool_size", "gateway_workers", "batch_size", "max_connections"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.driver == "thread" and (self.executor_threads is None or self.executor_threads < 1):
            raise ValueError("the thread driver needs executor_threads >= 1")


@dataclass(frozen=True)
class ModelResult:
    """The prediction: cycle time, effective concurrency and what binds it."""

    model_ms: float
    c_eff: int
    binding: str
    limits: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def concurrency_limits(inp: ModelInput) -> dict[str, int]:
    """Every limit on concurrent refreshes that applies to this configuration, by binding name."""
    limits: dict[str, int] = {}
    if inp.strategy == "bounded":
        limits["semaphore"] = inp.max_concurrent
    if inp.driver == "thread" and inp.executor_threads is not None:
        limits["executor"] = inp.executor_threads
    limits["pool"] = inp.pool_size + inp.max_overflow
    available = max(1, inp.max_connections - inp.reserved_connections)
    limits["max_connections"] = max(1, available // inp.gateway_workers)
    return limits


def effective_concurrency(inp: ModelInput) -> tuple[int, str, dict[str, int]]:
    """``(c_eff, binding, limits)``; binding is ``none`` when no limit is below the session count."""
    if inp.strategy in ("sequential", "batched"):
        return 1, "none", {}
    limits = concurrency_limits(inp)
    # Ties go to the earlier name in BINDINGS: the semaphore is the knob a user set on purpose.
    name, limit = min(limits.items(), key=lambda item: (item[1], BINDINGS.index(item[0])))
    if inp.sessions <= limit:
        return max(1, inp.sessions), "none", limits
    return limit, name, limits


def predict(inp: ModelInput) -> ModelResult:
    """The model's cycle time for ``inp``."""
    c_eff, binding, limits = effective_concurrency(inp)
    rounds = math.ceil(inp.sessions / inp.batch_size) if inp.strategy == "batched" else (
        math.ceil(inp.sessions / c_eff) if inp.sessions else 0
    )
    model_ms = inp.sessions * inp.check_ms + rounds * inp.refresh_ms
    return ModelResult(model_ms=round(model_ms, 3), c_eff=c_eff, binding=binding, limits=limits)


# --- the `model` sub-command --------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m harness model``."""
    parser.add_argument("--sessions", type=int, required=True, help="connected sessions to refresh")
    parser.add_argument("--db-latency-ms", type=float, required=True, help="cost of one refresh, ms")
    parser.add_argument("--check-ms", type=float, default=0.0, help="cost of one phase-1 check, ms (default 0)")
    parser.add_argument("--strategy", choices=("sequential", "gather", "bounded", "batched"), default="bounded")
    parser.add_argument("--driver", choices=("thread", "async"), default=None,
                        help="default: thread when --executor-threads is given, else async")
    parser.add_argument("--max-concurrent", type=int, default=20)
    parser.add_argument("--executor-threads", type=int, default=None,
                        help="thread driver's executor size (default: Python's min(32, cpu+4))")
    parser.add_argument("--pool-size", type=int, default=20)
    parser.add_argument("--max-overflow", type=int, default=10)
    parser.add_argument("--max-connections", type=int, default=100, help="Postgres max_connections")
    parser.add_argument("--reserved-connections", type=int, default=DEFAULT_RESERVED_CONNECTIONS)
    parser.add_argument("--gateway-workers", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--json", action="store_true", help="print {model_ms, c_eff, binding} as JSON")


def run(args: argparse.Namespace) -> int:
    """Print the model's prediction and binding constraint without running anything."""
    from gateway_sim.config import default_executor_threads

    threads = args.executor_threads
    driver = args.driver or ("thread" if threads is not None else "async")
    if driver == "thread" and threads is None:
        threads = default_executor_threads()
    result = predict(ModelInput(
        sessions=args.sessions, refresh_ms=args.db_latency_ms, check_ms=args.check_ms, strategy=args.strategy,
        driver=driver, max_concurrent=args.max_concurrent, executor_threads=threads,
        pool_size=args.pool_size, max_overflow=args.max_overflow, max_connections=args.max_connections,
        reserved_connections=args.reserved_connections, gateway_workers=args.gateway_workers,
        batch_size=args.batch_size,
    ))
    if args.json:
        print(json.dumps({"model_ms": result.model_ms, "c_eff": result.c_eff, "binding": result.binding,
                          "limits": result.limits}))
        return 0
    limits = ", ".join(f"{k}={v}" for k, v in result.limits.items()) or "-"
    print(f"model: {result.model_ms:.1f} ms per cycle for {args.sessions} sessions "
          f"({args.strategy}, {driver} driver)")
    print(f"effective concurrency: {result.c_eff} (binding: {result.binding}; limits: {limits})")
    return 0
