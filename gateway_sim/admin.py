"""The admin API as its own aiohttp sub-application, mounted at ``/admin`` only when admin is enabled.

Its middleware lets loopback clients in and nobody else. Handlers read the gateway's state through
``request.config_dict`` (the parent application's keys); :mod:`gateway_sim.admin_client` is the client.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway_sim import mcp
from gateway_sim import store as st
from gateway_sim.allocator import heap_stats
from gateway_sim.appkeys import CONFIG, CYCLES, REGISTRY, STORE, spawn
from gateway_sim.costs import DEFAULT_SAMPLES, MAX_SAMPLES, CpuCosts, measure_costs
from gateway_sim.gc_tuning import gc_stats
from gateway_sim.registry import SessionRegistry
from gateway_sim.responses import HttpJsonRpc, finite_number, int_query, json_error

log = logging.getLogger(__name__)

CYCLE_WAIT_MARGIN = 60.0
"""Seconds a between-cycles calibration waits for a cycle to end beyond one cleanup interval."""


def _is_loopback(request: web.Request) -> bool:
    try:
        address = ipaddress.ip_address((request.remote or "").split("%")[0])
    except ValueError:
        return False
    # a dual-stack socket shows IPv4 clients as ::ffff:a.b.c.d
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return (mapped or address).is_loopback


@web.middleware
async def admin_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Admin routes answer loopback clients only."""
    if not _is_loopback(request):
        return json_error(403, "admin endpoints answer loopback clients only")
    return await handler(request)


async def admin_cycles(request: web.Request) -> web.Response:
    """Recent cycle records (``?since=N`` for those after cycle N), pool gauges and accounting."""
    app = request.config_dict
    try:
        since = int_query(request, "since", 0)
        limit = int_query(request, "limit", 1000)
    except HttpJsonRpc as exc:
        return exc.response()
    cycles = app[CYCLES].since(since)[-max(0, limit) :] if limit > 0 else []
    registry = app[REGISTRY]
    config = app[CONFIG]
    return web.json_response(
        {
            "worker": config.worker_id,
            "pid": os.getpid(),
            "cycles_total": app[CYCLES].total,
            "cycles": [c.as_dict() for c in cycles],
            "pool": registry.monitor.snapshot().as_dict(),
            "sessions": registry.accounting(),
            "config": config.reported() | registry.describe(),
        }
    )


async def admin_db(request: web.Request) -> web.Response:
    """``pg_stat_activity`` of the gateways by state, and the server's ``max_connections``."""
    return web.json_response(await request.config_dict[STORE].run(st.db_activity))


async def admin_sessions(request: web.Request) -> web.Response:
    """The ids of the sessions this process holds, by transport, with the accounting."""
    registry = request.config_dict[REGISTRY]
    by_transport: dict[str, list[str]] = {}
    for session_id, transport in registry.sessions.items():
        by_transport.setdefault(transport.kind, []).append(session_id)
    return web.json_response({"worker": request.config_dict[CONFIG].worker_id, "sessions": by_transport,
                              "accounting": registry.accounting()})


async def admin_cleanup(request: web.Request) -> web.Response:
    """Run one cleanup cycle now and return its record."""
    record = await request.config_dict[REGISTRY].run_cleanup_cycle()
    return web.json_response(record.as_dict())


def _process_stats(app: Any) -> dict[str, Any]:
    """This process's resident memory (and the C allocator's bytes in use vs kept free), open file descriptors,
    asyncio tasks and pooled connections."""
    rss_bytes: int | None = None
    open_fds: int | None = None
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            rss_bytes = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        open_fds = len(os.listdir("/proc/self/fd"))
    except (OSError, ValueError, IndexError):  # no /proc on this platform
        pass
    registry = app[REGISTRY]
    pool = registry.monitor.pool
    return {
        "pid": os.getpid(),
        "rss_bytes": rss_bytes,
        "open_fds": open_fds,
        "asyncio_tasks": len(asyncio.all_tasks()),
        "pool_connections": pool.checkedin() + pool.checkedout(),  # type: ignore[attr-defined]
        "sessions_active": len(registry.sessions),
        "sessions_persistent": sum(1 for t in registry.sessions.values() if t.persistent),
        **(heap_stats() or {"malloc_in_use_bytes": None, "malloc_free_bytes": None}),
        "malloc_mmap_threshold": app[CONFIG].malloc_mmap_threshold,
        **gc_stats(),
    }


async def admin_process(request: web.Request) -> web.Response:
    """Resource use of this worker: RSS, open fds, asyncio tasks, pooled connections, sessions."""
    return web.json_response({"worker": request.config_dict[CONFIG].worker_id, **_process_stats(request.config_dict)})


MAX_HOLD_SECONDS = 3600.0


async def admin_hold_connections(request: web.Request) -> web.Response:
    """The pool-exhaust fault: ``{"seconds": 5, "connections": N}`` checks N pooled connections out (default:
    the pool's limit) and keeps them idle for that long, so other work waits for the pool or times out."""
    try:
        body = json.loads(await request.read() or b"{}")
    except (ValueError, RecursionError):
        return json_error(400, "body must be a JSON object", mcp.PARSE_ERROR)
    registry = request.config_dict[REGISTRY]
    limit = registry.monitor.limit
    if not isinstance(body, dict) or set(body) - {"seconds", "connections"}:
        return json_error(400, "expected an object with seconds and optionally connections", mcp.INVALID_PARAMS)
    seconds = finite_number(body.get("seconds"))
    if seconds is None or not 0 < seconds <= MAX_HOLD_SECONDS:
        return json_error(400, f"seconds must be a number in (0, {MAX_HOLD_SECONDS:g}]", mcp.INVALID_PARAMS)
    count = body.get("connections", limit)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= limit:
        return json_error(400, f"connections must be an integer in [1, {limit}]", mcp.INVALID_PARAMS)

    async def hold() -> None:
        held = await registry.hold_connections(count, seconds)
        log.warning("held %d of %d pooled connections for %.1f s", held, count, seconds)

    spawn(request.config_dict, hold())
    return web.json_response({"holding": count, "seconds": seconds}, status=202)


async def admin_latency_get(request: web.Request) -> web.Response:
    """The injected refresh latency/jitter/error rate in force."""
    return web.json_response(await request.config_dict[STORE].run(st.get_fault_knobs))


async def admin_latency_post(request: web.Request) -> web.Response:
    """Change the injected latency live: ``{"latency_ms": 80, "jitter_ms": 5, "error_rate": 0}``."""
    try:
        body = json.loads(await request.read() or b"{}")
    except (ValueError, RecursionError):
        return json_error(400, "body must be a JSON object", mcp.PARSE_ERROR)
    if not isinstance(body, dict) or set(body) - {"latency_ms", "jitter_ms", "error_rate"}:
        return json_error(
            400, "expected an object with latency_ms, jitter_ms and/or error_rate", mcp.INVALID_PARAMS
        )
    values: dict[str, float | None] = {}
    for name in ("latency_ms", "jitter_ms", "error_rate"):
        value = body.get(name)
        values[name] = None if value is None else finite_number(value)
        if value is not None and values[name] is None:
            return json_error(400, f"{name} must be a finite number", mcp.INVALID_PARAMS)
    try:
        knobs = await request.config_dict[STORE].run(
            st.set_fault_knobs, values["latency_ms"], values["jitter_ms"], values["error_rate"]
        )
    except ValueError as exc:
        return json_error(400, str(exc), mcp.INVALID_PARAMS)
    return web.json_response(knobs)


async def admin_calibrate(request: web.Request) -> web.Response:
    """Measure this process's CPU per refresh, phase-1 check and phase-1 removal: ``{"samples": 300}`` runs a
    burst of each, on connections the injected faults skip, with this gateway's driver and strategy.
    ``"between_cycles": true`` waits for the next cleanup cycle to end and holds the next one off until the burst
    is done: a calibration under load that no cycle shares the loop with."""
    try:
        body = json.loads(await request.read() or b"{}")
    except (ValueError, RecursionError):
        return json_error(400, "body must be a JSON object", mcp.PARSE_ERROR)
    if not isinstance(body, dict) or set(body) - {"samples", "between_cycles"}:
        return json_error(400, "expected an object with optionally samples and between_cycles", mcp.INVALID_PARAMS)
    samples = body.get("samples", DEFAULT_SAMPLES)
    if isinstance(samples, bool) or not isinstance(samples, int) or not 1 <= samples <= MAX_SAMPLES:
        return json_error(400, f"samples must be an integer in [1, {MAX_SAMPLES}]", mcp.INVALID_PARAMS)
    between = body.get("between_cycles", False)
    if not isinstance(between, bool):
        return json_error(400, "between_cycles must be true or false", mcp.INVALID_PARAMS)
    app = request.config_dict
    registry = app[REGISTRY]
    if not isinstance(registry, SessionRegistry):
        return json_error(501, "CPU calibration runs the sim registry's cleanup; this gateway hosts another")

    def burst() -> Awaitable[CpuCosts]:
        return measure_costs(registry.store, registry.config, samples)

    if not between:
        costs = await burst()
    else:
        wait = registry.config.cleanup_interval + CYCLE_WAIT_MARGIN
        try:
            costs = await registry.between_cycles(burst, timeout=wait)
        except TimeoutError:
            return json_error(409, f"no cleanup cycle ended within {wait:g} s")
    return web.json_response({"worker": app[CONFIG].worker_id, **costs.as_dict()})


def create_admin_app() -> web.Application:
    """The ``/admin`` routes with their loopback-only middleware."""
    admin = web.Application(middlewares=[admin_middleware])
    admin.router.add_get("/cycles", admin_cycles)
    admin.router.add_post("/cleanup", admin_cleanup)
    admin.router.add_get("/db", admin_db)
    admin.router.add_get("/sessions", admin_sessions)
    admin.router.add_get("/latency", admin_latency_get)
    admin.router.add_post("/latency", admin_latency_post)
    admin.router.add_get("/process", admin_process)
    admin.router.add_post("/hold-connections", admin_hold_connections)
    admin.router.add_post("/calibrate", admin_calibrate)
    return admin
