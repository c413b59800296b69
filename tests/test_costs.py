"""The gateway's CPU costs, measured in a real gateway process on the embedded Postgres (``/admin/calibrate``)."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from gateway_sim.admin_client import AdminClient, AdminError


@pytest.mark.parametrize("driver", ["async", "thread"])
def test_calibrate_measures_cpu_in_the_gateway_and_leaves_latency_in_force(start_gateway, driver: str) -> None:
    gw = start_gateway("--cleanup-interval", "60", "--driver", driver, "--db-latency-ms", "50",
                       "--strategy", "sequential")
    admin = AdminClient(gw.url)
    before = admin.accounting()
    costs = admin.calibrate(samples=100)
    assert costs["driver"] == driver and costs["samples"] == 100
    refresh, check = costs["refresh"], costs["check"]
    # a refresh costs the process CPU (driver, SQLAlchemy, the loop); a check is a few attribute reads
    assert refresh["cpu_ms"] > 0
    assert check["cpu_ms"] < refresh["cpu_ms"] / 10
    # one refresh after another, at zero injected latency: far below the 50 ms the gateway was started with
    assert refresh["wall_ms"] < 25
    # a per-session removal awaits its own DELETE, a batched one shares one: wide margin
    assert costs["remove_per_session"]["wall_ms"] > 3 * costs["remove_batched"]["wall_ms"]
    assert costs["delete_ms"] > 0 and 0 < costs["cpu_share"] <= 1
    assert costs["cpu_refresh_ms"] == pytest.approx(refresh["cpu_ms"], rel=1e-3)
    assert admin.latency()["latency_ms"] == 50  # never changed: the burst's own connections skip it
    assert admin.accounting() == before  # the scratch registry leaves the gateway's accounting alone
    assert admin.sessions()["sessions"] == {}


def test_calibrate_rejects_bad_samples(start_gateway) -> None:
    admin = AdminClient(start_gateway("--cleanup-interval", "60").url)
    for body in ({"samples": 0}, {"samples": "many"}, {"samples": 10**9}, {"other": 1}, {"between_cycles": "yes"}):
        with pytest.raises(AdminError) as exc:
            admin.request("POST", "/admin/calibrate", body)
        assert exc.value.status == 400


def test_calibrate_between_cycles_holds_the_next_cycle_off(start_gateway) -> None:
    """Right after a cycle ends, and no cycle starts until the burst is done, though the interval is far shorter."""
    gw = start_gateway("--cleanup-interval", "0.2", "--db-latency-ms", "5")
    admin = AdminClient(gw.url)
    time.sleep(1.0)  # a few cycles at the interval first
    costs = admin.calibrate(samples=3000, between_cycles=True)
    time.sleep(1.0)  # and after
    burst_seconds = costs["samples"] * costs["refresh"]["wall_ms"] / 1000.0
    assert burst_seconds > 0.2 * 2  # the burst alone is longer than two cleanup intervals
    cycles = admin.cycles()["cycles"]
    starts = [datetime.fromisoformat(c["started_at"]).timestamp() for c in cycles]
    ends = [start + c["total_ms"] / 1000.0 for start, c in zip(starts, cycles, strict=True)]
    gaps = [later - end for end, later in zip(ends, starts[1:], strict=False)]
    assert max(gaps) >= burst_seconds  # the cycle after the burst waited for all of it
    assert sorted(gaps)[len(gaps) // 2] < burst_seconds / 2  # the others kept the interval
    assert admin.sessions()["sessions"] == {}
