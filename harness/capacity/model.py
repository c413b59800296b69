"""The cleanup cycle-time model and the constraint that binds it (pure functions): a roofline.

With C connected sessions, D disconnected ones and N = C + D checked::

    cycle = expiry + N × check + removal(D) + phase2
    phase2 = L_refresh + steady + (w − 1) × roof       a pipeline: fill, steady state, drain
    steady = (((rounds − 1) × L_refresh)^p + ((statements − w) × roof)^p)^(1/p)
                                             (p = 1.5; 4 for the thread driver; 0 when all statements fit in one
                                              wave, which leaves L_refresh + (statements − 1) × roof)

    statements    = C (bounded, gather, sequential: one refresh statement per session)
                    ceil(C / batch_size)     (batched: one UPDATE … = ANY(:ids) per chunk, the chunks gathered
                                             under the same limits)
    rounds        = ceil(statements / c_eff)  waves of statements
    w             = min(c_eff, statements)    statements in flight at once
    roof          = max(cpu_refresh / cpu_share, burst_refresh) × sessions per statement
    c_eff         = min(max_concurrent, executor threads (thread driver), pool_size + max_overflow,
                        (max_connections − reserved) / gateway workers)
    removal(D)    = D × (L_delete + cpu_remove)   phase-1 removal per-session: one DELETE each, one after another
                    L_delete + D × cpu_remove     phase-1 removal batched: one DELETE for all gone sessions

Why each term: each cycle starts with the TTL sweep, one DELETE of the expired rows (``expiry``, its calibrated
wall time: a round trip and the scan); phase 1 awaits each check in turn, so checks add up (a check is CPU only); a
per-session removal awaits its own DELETE round trip before the next check, so removals add up too, while a batched
one pays one round trip and keeps only the per-session work (closing the transport, the bookkeeping). Phase 2 is
bound by the slower of two resources: the database round trips (``rounds`` waves of ``L_refresh``, the wall time of
one refresh), or the gateway's own CPU (one event loop, and under the GIL the driver's threads too, run the client
side of every refresh one after another: ``C × cpu_refresh``). Phase 2 is a pipeline of ``w`` statements in
flight (:func:`pipeline_ms`): nothing overlaps the first round trip (the fill), nor the loop's work on the
replies of the last ``w`` statements after the last round trip (the drain); between them the other round trips
and the loop's work on the other statements overlap, combined as a smooth maximum (:func:`phase2_ms`,
:func:`overlap_norm`), not the ideal ``max``. With few waves the fill and the drain are most of the cycle; with
many, the steady state, and the cycle tends to the larger roof. ``binding`` is ``cpu`` when the
throughput roof is the larger; else the concurrency limit that sets ``c_eff`` (``none`` when no limit is below C).

``cpu_share`` is the share of a core the gateway process got while its calibration burst was CPU-bound (1 on an
idle machine; less when other processes take the cores). ``burst_refresh`` is the same burst's wall time per
refresh: at zero injected latency, with the cycle's own strategy and concurrency, nothing is left of a refresh
but work — the loop's, the driver's and the database's, which on one machine share the cores. When the
database's side is the larger, the burst's wall time, not the loop's CPU, is the throughput roof.
``check`` is ``max(check_ms, cpu_check_ms)``: the older ``--check-ms`` and the calibrated CPU of one check are
the same cost.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.settings import DEFAULT_RESERVED_CONNECTIONS, SETTINGS

BINDINGS = ("semaphore", "executor", "pool", "max_connections", "cpu", "none")
PHASE1_REMOVALS = ("per-session", "batched")


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
    disconnected: int = 0
    phase1_removal: str = "per-session"
    delete_ms: float = 0.0
    cpu_refresh_ms: float = 0.0
    burst_refresh_ms: float = 0.0
    cpu_check_ms: float = 0.0
    cpu_remove_ms: float = 0.0
    cpu_share: float = 1.0
    expiry_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.sessions < 0 or self.disconnected < 0:
            raise ValueError("sessions must be >= 0")
        costs = (self.refresh_ms, self.check_ms, self.delete_ms, self.cpu_refresh_ms, self.burst_refresh_ms,
                 self.cpu_check_ms, self.cpu_remove_ms, self.expiry_ms)
        if min(costs) < 0:
            raise ValueError("latencies must be >= 0")
        if not 0 < self.cpu_share <= 1:
            raise ValueError("cpu_share must be in (0, 1]")
        if self.phase1_removal not in PHASE1_REMOVALS:
            raise ValueError(f"phase1_removal must be one of {', '.join(PHASE1_REMOVALS)}")
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
    terms: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def concurrency_limits(inp: ModelInput) -> dict[str, int]:
    """Every limit on concurrent refreshes that applies to this configuration, by binding name."""
    limits: dict[str, int] = {}
    if inp.strategy in ("bounded", "batched"):
        limits["semaphore"] = inp.max_concurrent
    if inp.driver == "thread" and inp.executor_threads is not None:
        limits["executor"] = inp.executor_threads
    limits["pool"] = inp.pool_size + inp.max_overflow
    available = max(1, inp.max_connections - inp.reserved_connections)
    limits["max_connections"] = max(1, available // inp.gateway_workers)
    return limits


def effective_concurrency(inp: ModelInput) -> tuple[int, str, dict[str, int]]:
    """``(c_eff, binding, limits)``; binding is ``none`` when no limit is below the session count."""
    if inp.strategy == "sequential":
        return 1, "none", {}
    limits = concurrency_limits(inp)
    # Ties go to the earlier name in BINDINGS: the semaphore is the knob a user set on purpose.
    name, limit = min(limits.items(), key=lambda item: (item[1], BINDINGS.index(item[0])))
    statements = statement_count(inp)
    if statements <= limit:
        return max(1, statements), "none", limits
    return limit, name, limits


def chunks(inp: ModelInput) -> int:
    """Refresh statements of the batched strategy: one per ``batch_size`` ids."""
    return math.ceil(inp.sessions / inp.batch_size)


def statement_count(inp: ModelInput) -> int:
    """Refresh statements in phase 2: one per session, or one per chunk batched."""
    return chunks(inp) if inp.strategy == "batched" else inp.sessions


def refresh_rounds(inp: ModelInput, c_eff: int) -> int:
    """Waves of refresh statements in phase 2: one per ``c_eff`` sessions, or per ``c_eff`` chunks batched."""
    if not inp.sessions:
        return 0
    return math.ceil(statement_count(inp) / c_eff)


def removal_ms(inp: ModelInput) -> float:
    """Phase-1 removal of the ``disconnected`` sessions: a DELETE each (per-session), or one for all (batched)."""
    if not inp.disconnected:
        return 0.0
    if inp.phase1_removal == "batched":
        return inp.delete_ms + inp.disconnected * inp.cpu_remove_ms
    return inp.disconnected * (inp.delete_ms + inp.cpu_remove_ms)


OVERLAP_NORM = 1.5
"""How the two roofs of phase 2's steady state combine: ``(a^p + b^p)^(1/p)``; p → ∞ is the ideal ``max``, p = 1
their sum."""
THREAD_OVERLAP_NORM = 4.0
"""The same for the thread driver, whose executor threads each take their own reply (see :func:`overlap_norm`)."""


def overlap_norm(driver: str) -> float:
    """The exponent p of phase 2's smooth maximum for ``driver``.

    On the event loop (``async``) a wave's replies come back together and queue for the one loop. On the
    ``thread`` driver each executor thread waits for its own reply with the GIL released and picks it up
    itself, so the round trips and the CPU overlap better: a larger p (see the README for the grids it was
    chosen on).
    """
    return THREAD_OVERLAP_NORM if driver == "thread" else OVERLAP_NORM


def phase2_ms(database_ms: float, cpu_ms: float, norm: float = OVERLAP_NORM) -> float:
    """The smooth maximum of two overlapping roofs: the round trips and the loop's work between fill and drain.

    The roofline's ``max`` assumes the two overlap perfectly. They do not quite: the refreshes of a wave come
    back from the database together and queue for the loop, so where the roofs are close the steady state is
    longer than either; far from the knee it is the larger roof.
    """
    if database_ms <= 0 or cpu_ms <= 0:
        return max(database_ms, cpu_ms)
    return float((database_ms**norm + cpu_ms**norm) ** (1.0 / norm))


def pipeline_ms(refresh_ms: float, rounds: int, statements: int, window: int, statement_roof_ms: float,
                norm: float = OVERLAP_NORM) -> float:
    """Phase 2 as a pipeline of ``window`` statements in flight, ``statements`` in ``rounds`` waves: the first
    round trip (fill), then the other round trips overlapped with the loop's work on all but the last
    ``window`` statements (:func:`phase2_ms`), then the work on the replies of the last ones (drain).

    One wave (``statements ≤ window``) has no steady state: the round trip of one statement, then the roof's
    time for each of the others; one statement, as a batched cycle of up to ``batch_size`` sessions sends, is
    just ``refresh_ms``.
    """
    if statements <= 0:
        return 0.0
    in_flight = max(1, min(window, statements))
    steady = phase2_ms(max(0, rounds - 1) * refresh_ms, (statements - in_flight) * statement_roof_ms, norm)
    return refresh_ms + steady + (in_flight - 1) * statement_roof_ms


def predict(inp: ModelInput) -> ModelResult:
    """The model's cycle time for ``inp`` (the roofline in the module docstring), with its terms."""
    c_eff, binding, limits = effective_concurrency(inp)
    check = max(inp.check_ms, inp.cpu_check_ms)
    checks = (inp.sessions + inp.disconnected) * check
    removal = removal_ms(inp)
    rounds = refresh_rounds(inp, c_eff)
    database = rounds * inp.refresh_ms
    cpu = inp.sessions * max(inp.cpu_refresh_ms / inp.cpu_share, inp.burst_refresh_ms)
    if cpu > database:
        binding = "cpu"
    statements = statement_count(inp)
    phase2 = pipeline_ms(inp.refresh_ms, rounds, statements, c_eff, cpu / max(1, statements),
                         overlap_norm(inp.driver))
    model_ms = inp.expiry_ms + checks + removal + phase2
    terms = {"expiry_ms": round(inp.expiry_ms, 3), "check_ms": round(checks, 3), "removal_ms": round(removal, 3),
             "refresh_db_ms": round(database, 3), "refresh_cpu_ms": round(cpu, 3)}
    return ModelResult(model_ms=round(model_ms, 3), c_eff=c_eff, binding=binding, limits=limits, terms=terms)


def model_input(knobs: Mapping[str, Any], *, sessions: int, refresh_ms: float, check_ms: float = 0.0,
                max_connections: int | None = None, disconnected: int = 0, delete_ms: float = 0.0,
                cpu: Mapping[str, float] | None = None) -> ModelInput:
    """The model's input for a configuration given as knobs (a run's config, a bench or sweep point).

    The one place knobs become a :class:`ModelInput`: a knob not given takes its default from the settings
    table; the executor counts only for the thread driver; ``max_connections`` wins over the knob when the
    server reported its own. ``cpu`` gives calibrated ``cpu_refresh_ms``/``burst_refresh_ms``/``cpu_check_ms``/
    ``cpu_remove_ms``/``expiry_ms`` (and ``cpu_share``); without it they come from the knobs of the same names (0
    by default).
    """

    def knob(name: str) -> Any:
        value = knobs.get(name)
        return SETTINGS[name].default_value() if value is None else value

    def cost(name: str) -> float:
        if cpu is not None and cpu.get(name) is not None:
            return float(cpu[name])
        return float(knobs.get(name) or 0.0)

    driver = knob("driver")
    return ModelInput(
        sessions=sessions, refresh_ms=refresh_ms, check_ms=check_ms, strategy=knob("strategy"), driver=driver,
        max_concurrent=knob("max_concurrent"),
        executor_threads=knob("executor_threads") if driver == "thread" else None,
        pool_size=knob("pool_size"), max_overflow=knob("max_overflow"),
        max_connections=max_connections or knob("max_connections"),
        reserved_connections=knob("reserved_connections"), gateway_workers=knob("gateway_workers"),
        batch_size=knob("batch_size"), disconnected=disconnected, phase1_removal=knob("phase1_removal"),
        delete_ms=delete_ms, cpu_refresh_ms=cost("cpu_refresh_ms"), burst_refresh_ms=cost("burst_refresh_ms"),
        cpu_check_ms=cost("cpu_check_ms"), cpu_remove_ms=cost("cpu_remove_ms"), cpu_share=cost("cpu_share") or 1.0,
        expiry_ms=cost("expiry_ms"),
    )
