"""The gateway process starts on the embedded Postgres and answers its health and admin routes."""

import json
import urllib.request


def test_gateway_serves_health_and_db_activity(start_gateway):
    gw = start_gateway("--cleanup-interval", "60")
    with urllib.request.urlopen(f"{gw.url}/healthz", timeout=10) as resp:
        assert json.load(resp)["status"] == "ok"
    with urllib.request.urlopen(f"{gw.url}/admin/db", timeout=10) as resp:
        activity = json.load(resp)
    assert activity["max_connections"] == 300
    assert activity["gateway_connections"] >= 1
