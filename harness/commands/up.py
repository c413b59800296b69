"""Start Postgres and the gateway, print their addresses, and keep them running until Ctrl-C/SIGTERM.

Then stop both, leaving no process or data directory behind.
"""

from __future__ import annotations

import argparse
import signal
import threading

from harness import settings
from harness.commands.options import add_database_options, add_gateway_options, check_gateway_options
from harness.errors import UsageError
from harness.faults.injectors import RestartControl
from harness.sut.stack import Stack, StackOptions
from harness.sut.state import default_state_path, remove_state, write_state


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m harness up``."""
    add_database_options(parser)
    add_gateway_options(parser)
    settings.add(parser, ("host", "port", "latency_mode", "log_dir"), title="stack")
    parser.add_argument(settings.SETTINGS["state"].flag, type=settings.SETTINGS["state"].type, default=None,
                        help=f"{settings.SETTINGS['state'].help} (default {default_state_path()})")


def run(args: argparse.Namespace) -> int:
    """Start everything, wait for a signal, stop everything."""
    check_gateway_options(args)
    try:
        settings.check(vars(args), ("host", "port", "latency_mode"))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    stack = Stack(StackOptions.from_knobs(vars(args)))
    # 'harness fault restart-db@…' asks through this directory: only this process can run pg_ctl
    control = RestartControl.create() if stack.provider.supports_restart else None
    try:
        stack.start()
        for url in stack.gateway_urls:
            print(f"gateway: {url}", flush=True)
        print(f"database: {stack.db_url}", flush=True)
        if stack.proxy_control_url:
            print(f"latency proxy control: {stack.proxy_control_url}", flush=True)
        write_state({**stack.state(), **(control.state() if control else {})}, args.state)
        print("running; Ctrl-C stops", flush=True)
        while not stop.wait(0.5):
            if control is not None:
                control.serve_once(stack.provider, stop)
            dead = stack.dead_gateways()
            if dead:
                print(f"gateway {', '.join(dead)} exited; stopping", flush=True)
                return 1
        return 0
    finally:
        stack.stop()
        remove_state(args.state)
        if control is not None:
            control.remove()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("stopped", flush=True)
