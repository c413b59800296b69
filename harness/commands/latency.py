"""Show or change the injected DB latency of a running stack, live, without a restart.

``python -m harness latency set 80 [--jitter-ms 5]`` or ``python -m harness latency show``. The target is,
in this order: ``--proxy-url`` (a latency proxy's control URL), ``--gateway-url`` (its /admin/latency),
``--db-url`` (the knobs table directly), else what ``harness up`` recorded.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gateway_sim import store as st
from gateway_sim.admin_client import AdminClient, AdminError
from harness.errors import UsageError
from harness.sut.dbsync import sync_session
from harness.sut.state import read_state


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m harness latency``."""
    parser.add_argument("action", choices=("set", "show"))
    parser.add_argument("latency_ms", nargs="?", type=float, help="new latency in ms (for set)")
    parser.add_argument("--jitter-ms", type=float, default=None, help="new ± jitter in ms")
    parser.add_argument("--error-rate", type=float, default=None,
                        help="fraction of refreshes that fail inside Postgres (server mode only)")
    parser.add_argument("--gateway-url", default=None, help="a gateway's base URL")
    parser.add_argument("--db-url", default=None, help="the session database's URL")
    parser.add_argument("--proxy-url", default=None, help="a latency proxy's control URL")
    parser.add_argument("--state", type=Path, default=None, help="state file written by 'harness up'")


def _http(method: str, base: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    try:
        return AdminClient(base).request(method, path, body)
    except AdminError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot reach {base}{path}: {exc}") from None


def _target(args: argparse.Namespace) -> tuple[str, str]:
    if args.proxy_url:
        return "proxy", args.proxy_url.rstrip("/")
    if args.gateway_url:
        return "gateway", args.gateway_url.rstrip("/")
    if args.db_url:
        return "db", args.db_url
    state = read_state(args.state)
    if state.get("proxy_control_url"):
        return "proxy", str(state["proxy_control_url"]).rstrip("/")
    return "db", str(state["db_url"])


def run(args: argparse.Namespace) -> int:
    """Apply or show the latency."""
    if args.action == "set" and args.latency_ms is None and args.jitter_ms is None and args.error_rate is None:
        raise UsageError("latency set needs a value: latency set 80 [--jitter-ms 5]")
    kind, where = _target(args)
    body = {k: v for k, v in (("latency_ms", args.latency_ms), ("jitter_ms", args.jitter_ms),
                              ("error_rate", args.error_rate)) if v is not None}
    if kind == "proxy" and "error_rate" in body:
        raise UsageError("--error-rate works in server mode only (a proxy cannot fail statements)")
    if kind == "db":
        with sync_session(where) as session:
            knobs = (st.set_fault_knobs(session, args.latency_ms, args.jitter_ms, args.error_rate)
                     if args.action == "set" else st.get_fault_knobs(session))
    else:
        path = "/latency" if kind == "proxy" else "/admin/latency"  # the proxy's control API has the same shape
        knobs = _http("POST", where, path, body) if args.action == "set" else _http("GET", where, path)
    print(" ".join(f"{k}={v:g}" for k, v in knobs.items()) + f" ({kind})")
    return 0
