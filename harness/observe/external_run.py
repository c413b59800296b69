"""``harness run --gateway-url URL --db-url URL`` against a gateway without our ``/admin`` API: Locust drives
it while the observer watches its database, and the results are the observer's files plus Locust's."""

from __future__ import annotations

import argparse
import sys
import threading
import urllib.error
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.observe.sampler import Sampler
from harness.observe.session import finish, stop_on_signal
from harness.scenario.collect import get_json
from harness.scenario.locust_proc import LocustOptions, LocustProcess, read_stats


def has_admin_api(gateway_url: str) -> bool:
    """Whether the gateway answers ``GET /admin/cycles`` with cycle records."""
    try:
        return "cycles" in get_json(f"{gateway_url.rstrip('/')}/admin/cycles?limit=0", timeout=5)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def run_observed(args: argparse.Namespace, options: LocustOptions, out_dir: Path) -> dict[str, Any]:
    """Run the load against ``args.gateway_url`` and observe ``args.db_url``; write and return the summary."""
    if not args.db_url:
        raise UsageError(f"{args.gateway_url[0]} has no /admin/cycles: add --db-url URL (its database) to observe "
                         "its cleanup from Postgres")
    print(f"{args.gateway_url[0]} has no /admin/cycles: measuring cleanup by observing its database "
          "(harness observe, read-only)", file=sys.stderr)
    out_dir.mkdir(parents=True, exist_ok=True)
    sampler = Sampler(args.db_url)
    sampler.open()
    thread = threading.Thread(target=sampler.run, name="observe", daemon=True)
    locust = LocustProcess(options, [u.rstrip("/") for u in args.gateway_url], out_dir)
    warnings: list[str] = []
    stop = threading.Event()
    thread.start()
    try:
        with stop_on_signal(stop.set) as interrupted:
            locust.start()
            while locust.running() and not stop.wait(1.0):
                pass
            if interrupted.is_set():
                warnings.append("interrupted: the load was stopped early")
            locust.interrupt()
            locust.wait(60)
            drain = args.drain if args.drain is not None else 0.0
            stop.wait(drain)
    finally:
        if locust.running():
            locust.interrupt()
            locust.wait(30)
        sampler.stop()
        thread.join(30)
    config = {"db": "observed", "gateway_urls": list(args.gateway_url), "users": args.users,
              "spawn_rate": args.spawn_rate, "run_time": args.run_time, "session_lifetime": args.session_lifetime,
              "transport_mix": args.transport_mix, "calls_per_session": args.calls_per_session, "drain": drain}
    summary, _ = finish(sampler.observation, out_dir, config, warnings,
                        extra={"locust": read_stats(out_dir / "locust_stats.csv")})
    return summary
