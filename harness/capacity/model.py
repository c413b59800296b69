"""The cleanup cycle-time model and the constraint that binds its concurrency (pure functions).

    cycle ≈ N × check + ceil(N / c_eff) × L_refresh
    c_eff = min(max_concurrent, executor threads (thread driver), pool_size + max_overflow,
                (max_connections − reserved) / gateway workers)

``batched`` sends one statement per chunk: ``N × check + ceil(N / batch_size) × L_refresh``;
``sequential`` has c_eff = 1; ``gather`` has no semaphore.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.settings import DEFAULT_RESERVED_CONNECTIONS, SETTINGS

BINDINGS = ("semaphore", "executor", "pool", "max_connections", "none")


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


def model_input(knobs: Mapping[str, Any], *, sessions: int, refresh_ms: float, check_ms: float = 0.0,
                max_connections: int | None = None) -> ModelInput:
    """The model's input for a configuration given as knobs (a run's config, a bench or sweep point).

    The one place knobs become a :class:`ModelInput`: a knob not given takes its default from the settings
    table; the executor counts only for the thread driver; ``max_connections`` wins over the knob when the
    server reported its own.
    """

    def knob(name: str) -> Any:
        value = knobs.get(name)
        return SETTINGS[name].default_value() if value is None else value

    driver = knob("driver")
    return ModelInput(
        sessions=sessions, refresh_ms=refresh_ms, check_ms=check_ms, strategy=knob("strategy"), driver=driver,
        max_concurrent=knob("max_concurrent"),
        executor_threads=knob("executor_threads") if driver == "thread" else None,
        pool_size=knob("pool_size"), max_overflow=knob("max_overflow"),
        max_connections=max_connections or knob("max_connections"),
        reserved_connections=knob("reserved_connections"), gateway_workers=knob("gateway_workers"),
        batch_size=knob("batch_size"),
    )
