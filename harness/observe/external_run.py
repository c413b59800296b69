"""``harness run --gateway-url URL --db-url URL`` against a gateway without our ``/admin`` API: Locust drives
it while the observer watches its database, and the results are the observer's files plus Locust's."""

from __future__ import annotations

import sys
import threading
from typing import Any

from gateway_sim.admin_client import AdminClient
from harness.errors import UsageError
from harness.observe.sampler import Sampler
from harness.observe.session import finish, stop_on_signal
from harness.scenario.config import RunConfig
from harness.scenario.locust_proc import LocustProcess, read_stats


def has_admin_api(gateway_url: str) -> bool:
    """Whether the gateway answers ``GET /admin/cycles`` with cycle records."""
    try:
        return "cycles" in AdminClient(gateway_url, timeout=5).cycles(limit=0)
    except (OSError, ValueError):
        return False


def run_observed(config: RunConfig) -> dict[str, Any]:
    """Run the load against ``config.gateway_urls`` and observe the ``db_url`` knob; write and return the summary."""
    db_url = config.knobs.get("db_url")
    gateway = config.gateway_urls[0]
    if not db_url:
        raise UsageError(f"{gateway} has no /admin/cycles: add --db-url URL (its database) to observe its cleanup "
                         "from Postgres")
    print(f"{gateway} has no /admin/cycles: measuring cleanup by observing its database "
          "(harness observe, read-only)", file=sys.stderr)
    out_dir = config.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    sampler = Sampler(db_url)
    sampler.open()
    thread = threading.Thread(target=sampler.run, name="observe", daemon=True)
    locust = LocustProcess(config.load, list(config.gateway_urls), out_dir)
    warnings: list[str] = []
    stop = threading.Event()
    drain = float(config.knobs.get("drain") or 0.0)
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
            stop.wait(drain)
    finally:
        if locust.running():
            locust.interrupt()
            locust.wait(30)
        sampler.stop()
        thread.join(30)
    knobs = {k: config.knobs.get(k) for k in ("users", "spawn_rate", "run_time", "session_lifetime",
                                                "transport_mix", "calls_per_session", "drain")}
    summary, _ = finish(sampler.observation, out_dir, {"db": "observed", "gateway_urls": list(config.gateway_urls),
                                                       **knobs}, warnings,
                        extra={"locust": read_stats(out_dir / "locust_stats.csv")})
    return summary
