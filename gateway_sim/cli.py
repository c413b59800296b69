"""Command line of the gateway: ``python -m gateway_sim --db-url URL [options]``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from aiohttp import web

from gateway_sim.allocator import pin_mmap_threshold
from gateway_sim.app import create_app
from gateway_sim.config import (
    GatewayConfig,
    add_allocator_argument,
    add_registry_arguments,
    add_store_arguments,
    as_flag_message,
    registry_config_from_args,
    resolve_registry_knobs,
    store_config_from_args,
)

READY_PREFIX = "gateway: "


def build_parser() -> argparse.ArgumentParser:
    """The gateway's argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m gateway_sim",
        description="MCP gateway (SSE + Streamable HTTP) whose session registry runs the "
        "bounded-gather cleanup on Postgres.",
    )
    parser.add_argument("--db-url", required=True, help="postgresql:// URL of the session database")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=8000, help="port to bind; 0 picks a free one (default 8000)"
    )
    add_store_arguments(parser)
    add_registry_arguments(parser)
    parser.add_argument(
        "--sse-keepalive", type=float, default=15.0, help="seconds between SSE keepalive events (default 15)"
    )
    parser.add_argument(
        "--db-latency-ms",
        type=float,
        default=None,
        help="inject this latency into each refresh statement, inside Postgres",
    )
    parser.add_argument("--db-jitter-ms", type=float, default=None, help="± jitter on the injected latency")
    parser.add_argument("--cycle-log", default=None, help="append each cycle record to this JSON-lines file")
    parser.add_argument("--cycle-history", type=int, default=200,
                        help="cycle records kept in memory for /admin/cycles (default 200)")
    parser.add_argument("--session-log", default=None,
                        help="append a JSON line per session created/removed (with the reason) to this file")
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=1_048_576,
        help="largest accepted request body; larger gets 413 (default 1 MiB)",
    )
    parser.add_argument(
        "--auth-token", default=None, help="require 'Authorization: Bearer TOKEN' on the MCP endpoints"
    )
    add_allocator_argument(parser)
    parser.add_argument("--no-admin", action="store_true", help="do not serve the /admin/* routes")
    parser.add_argument("--worker-id", default="0", help="name of this worker in records and metrics")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="log level (default WARNING)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> GatewayConfig:
    """The one place gateway arguments become a :class:`GatewayConfig`."""
    resolve_registry_knobs(args)
    return GatewayConfig(
        store=store_config_from_args(args, args.db_url, application_name=f"mcp-gateway-sim:{args.worker_id}"),
        registry=registry_config_from_args(args),
        host=args.host,
        port=args.port,
        sse_keepalive=args.sse_keepalive,
        db_latency_ms=args.db_latency_ms,
        db_jitter_ms=args.db_jitter_ms,
        cycle_log=args.cycle_log,
        session_log=args.session_log,
        cycle_history=args.cycle_history,
        max_body_bytes=args.max_body_bytes,
        admin_enabled=not args.no_admin,
        auth_token=args.auth_token,
        worker_id=args.worker_id,
        malloc_mmap_threshold=args.malloc_mmap_threshold,
        registry_name=args.registry,
        loop_executor_threads=args.loop_executor_threads,
    )


async def serve(config: GatewayConfig, stop: asyncio.Event | None = None) -> None:
    """Serve until ``stop`` is set (or SIGINT/SIGTERM), then shut down cleanly."""
    stop = stop or asyncio.Event()
    pin_mmap_threshold(config.malloc_mmap_threshold)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(create_app(config), access_log=None, shutdown_timeout=10)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port, backlog=4096)
        await site.start()
        host, port = runner.addresses[0][:2]
        print(f"{READY_PREFIX}http://{host}:{port}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(as_flag_message(exc))
    try:
        asyncio.run(serve(config))
    except OSError as exc:
        print(f"gateway: cannot serve: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a database that does not answer at start-up, say
        print(f"gateway: failed to start: {type(exc).__name__}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    return 0
