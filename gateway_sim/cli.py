"""Command line of the gateway: ``python -m gateway_sim --db-url URL [options]``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Sequence

from gateway_sim.allocator import pin_mmap_threshold
from gateway_sim.config import GatewayConfig, gateway_cli_config
from gateway_sim.gc_tuning import tune_gc
from gateway_sim.settings import GATEWAY_SETTINGS, SIM_ONLY, add_settings

READY_PREFIX = "gateway: "


def build_parser() -> argparse.ArgumentParser:
    """The gateway's argument parser: every gateway row of the settings table."""
    parser = argparse.ArgumentParser(
        prog="python -m gateway_sim",
        description="MCP gateway (SSE + Streamable HTTP) whose session registry runs the "
        "bounded-gather cleanup on Postgres.",
    )
    # None: not given (the sim-only knobs are refused by a contextforge gateway; see gateway_cli_config)
    add_settings(parser, GATEWAY_SETTINGS, {name: None for name in (*SIM_ONLY, "executor_threads")},
                 required=("db_url",))
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="log level (default WARNING)",
    )
    return parser


async def serve(config: GatewayConfig, stop: asyncio.Event | None = None) -> None:
    """Serve until ``stop`` is set (or SIGINT/SIGTERM), then shut down cleanly."""
    from aiohttp import web  # imported here: the harness reads READY_PREFIX without loading the server

    from gateway_sim.app import create_app

    stop = stop or asyncio.Event()
    pin_mmap_threshold(config.malloc_mmap_threshold)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(create_app(config), access_log=None, shutdown_timeout=10)
    await runner.setup()
    tune_gc(config.gc_threshold)  # the app and its resources are up: what they hold now lives as long as they do
    try:
        site = web.TCPSite(runner, config.host, config.port, backlog=4096)
        await site.start()
        host, port = runner.addresses[0][:2]
        print(f"{READY_PREFIX}http://{host}:{port}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


def event_loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop factory for ``--loop`` (None: asyncio's own); ``ImportError`` without uvloop."""
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = gateway_cli_config(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        loop_factory = event_loop_factory(config.loop)
    except ImportError:
        parser.error("--loop uvloop needs the uvloop package (pip install uvloop)")
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(serve(config))
    except OSError as exc:
        print(f"gateway: cannot serve: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a database that does not answer at start-up, say
        print(f"gateway: failed to start: {type(exc).__name__}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    return 0
