"""Show or change the injected DB latency of a running stack, live, without a restart.

``python -m harness latency set 80 [--jitter-ms 5]`` or ``python -m harness latency show``. The target is,
in this order: ``--proxy-url`` (a latency proxy's control URL), ``--gateway-url`` (its /admin/latency),
``--db-url`` (the knobs table directly), else what ``harness up`` recorded.
"""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from gateway_sim import store as st
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


def _http(method: str, url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return dict(json.load(response))
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        raise UsageError(f"{url} answered {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise UsageError(f"cannot reach {url}: {exc}") from None


def _target(args: argparse.Namespace) -> tuple[str, str]:
    if args.proxy_url:
        return "proxy", args.proxy_url.rstrip("/") + "/latency"
    if args.gateway_url:
        return "gateway", args.gateway_url.rstrip("/") + "/admin/latency"
    if args.db_url:
        return "db", args.db_url
    state = read_state(args.state)
    if state.get("proxy_control_url"):
        return "proxy", str(state["proxy_control_url"]).rstrip("/") + "/latency"
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
        knobs = _http("POST", where, body) if args.action == "set" else _http("GET", where)
    print(" ".join(f"{k}={v:g}" for k, v in knobs.items()) + f" ({kind})")
    return 0
