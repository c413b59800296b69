"""The latency proxy on real parts: the embedded Postgres, psycopg and the gateway's own ORM statements.

Timing is asserted only as wide-margin ratios of the configured latency L.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy.engine import make_url

from gateway_sim import store as st
from gateway_sim.config import StoreConfig
from gateway_sim.store import open_store
from harness.sut.latency_proxy import LatencyProxy, parse_address, time_round_trips, validate_latency
from harness.sut.postgres import EmbeddedPostgres, free_port

L_MS = 20.0
ROUND_TRIPS = 20


def added_mean(direct: list[float], proxied: list[float]) -> float:
    return statistics.mean(proxied) - statistics.mean(direct)


def assert_near(added_ms: float, expected_ms: float) -> None:
    assert 0.8 * expected_ms <= added_ms <= 2.0 * expected_ms, (added_ms, expected_ms)


@pytest.fixture
def proxy(pg_server: EmbeddedPostgres) -> Iterator[LatencyProxy]:
    with LatencyProxy(pg_server.host, pg_server.port, latency_ms=L_MS, control_port=0, seed=7) as started:
        yield started


@pytest.fixture
def direct_ms(pg_server: EmbeddedPostgres) -> list[float]:
    assert pg_server.port is not None
    return time_round_trips((pg_server.host, pg_server.port), ROUND_TRIPS)


def connect(proxy: LatencyProxy, **kwargs: object) -> psycopg.Connection:
    host, port = proxy.address
    return psycopg.connect(host=host, port=port, user="postgres", dbname="postgres", **kwargs)


def control(proxy: LatencyProxy, method: str, body: bytes | None = None) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(f"{proxy.control_url}/latency", data=body, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_adds_latency_per_round_trip(proxy: LatencyProxy, direct_ms: list[float]) -> None:
    before = proxy.stats()
    proxied = time_round_trips(proxy.address, ROUND_TRIPS)
    assert_near(added_mean(direct_ms, proxied), L_MS)
    after = proxy.stats()
    # one delayed chunk per request; a few more for the startup and goodbye messages of the connection
    assert ROUND_TRIPS <= after.delayed_chunks - before.delayed_chunks <= ROUND_TRIPS + 6
    assert after.connections_total == before.connections_total + 1
    assert after.bytes_to_server > 0 and after.bytes_to_client > 0


def test_live_change_reaches_an_open_connection(proxy: LatencyProxy, direct_ms: list[float]) -> None:
    with connect(proxy, autocommit=True) as conn:
        pid = conn.info.backend_pid
        assert_near(added_mean(direct_ms, time_round_trips(conn, ROUND_TRIPS)), L_MS)
        proxy.set_latency(3 * L_MS)
        assert (proxy.latency_ms, proxy.jitter_ms) == (3 * L_MS, 0.0)
        assert_near(added_mean(direct_ms, time_round_trips(conn, 10)), 3 * L_MS)
        proxy.set_latency(0)
        assert added_mean(direct_ms, time_round_trips(conn, ROUND_TRIPS)) < 0.5 * L_MS
        assert conn.info.backend_pid == pid  # same connection throughout


@pytest.mark.parametrize("driver", ["thread", "async"])
async def test_gateway_refresh_pays_latency_once_per_round_trip(
    pg_server: EmbeddedPostgres, db_url: str, driver: str
) -> None:
    """The gateway's own refresh (ORM SELECT, UPDATE, COMMIT through its store) pays L per round trip."""
    with LatencyProxy(pg_server.host, pg_server.port, latency_ms=L_MS) as proxy:
        host, port = proxy.address
        proxied_url = make_url(db_url).set(host=host, port=port).render_as_string(hide_password=False)

        async def per_refresh(url: str, count: int = 5) -> tuple[float, float]:
            store = open_store(StoreConfig(db_url=url, driver=driver, pool_size=1, max_overflow=0))
            try:
                await store.refresh("refresh-me")  # connect and warm up outside the timing
                chunks = proxy.stats().delayed_chunks
                started = time.perf_counter()
                for _ in range(count):
                    assert await store.refresh("refresh-me")
                elapsed_ms = (time.perf_counter() - started) * 1000.0
                return elapsed_ms / count, (proxy.stats().delayed_chunks - chunks) / count
            finally:
                await store.close()

        setup = open_store(StoreConfig(db_url=db_url, driver=driver, pool_size=1, max_overflow=0))
        try:
            await setup.run(st.create_schema)
            await setup.run(st.insert_session, "refresh-me")
        finally:
            await setup.close()
        direct_ms, _ = await per_refresh(db_url)
        proxied_ms, round_trips = await per_refresh(proxied_url)
    # SELECT + UPDATE + COMMIT at least; the driver's BEGIN and the pool's pre-ping add their own
    # (psycopg: ping, BEGIN, SELECT, UPDATE, COMMIT; asyncpg's ping is BEGIN, SELECT 1, ROLLBACK)
    assert 3 <= round_trips <= 8, round_trips
    assert_near(proxied_ms - direct_ms, round_trips * L_MS)


def interquartile_range(values: list[float]) -> float:
    quartiles = statistics.quantiles(values, n=4)
    return quartiles[2] - quartiles[0]


def test_jitter_keeps_the_mean_and_widens_the_spread(
    pg_server: EmbeddedPostgres, direct_ms: list[float]
) -> None:
    with (
        LatencyProxy(pg_server.host, pg_server.port, latency_ms=L_MS, seed=11) as proxy,
        connect(proxy, autocommit=True) as conn,
    ):
        steady = time_round_trips(conn, 30)
        proxy.set_latency(L_MS, jitter_ms=0.75 * L_MS)
        jittered = time_round_trips(conn, 30)
    assert_near(added_mean(direct_ms, jittered), L_MS)
    assert interquartile_range(jittered) > 2 * interquartile_range(steady)  # one slow outlier moves neither
    assert max(jittered) - min(jittered) > 0.5 * L_MS


def test_large_messages_keep_their_byte_order(proxy: LatencyProxy) -> None:
    """Many chunks with jittered due times: the protocol survives only if none overtakes another."""
    proxy.set_latency(2.0, jitter_ms=2.0)
    payload = os.urandom(3 * 1024 * 1024).hex()
    with connect(proxy, autocommit=True) as conn:
        row = conn.execute("SELECT md5(%s), length(%s)", (payload, payload)).fetchone()
    assert row == (hashlib.md5(payload.encode()).hexdigest(), len(payload))
    assert proxy.stats().delayed_chunks > 10


def test_control_endpoint_reads_validates_and_applies(proxy: LatencyProxy) -> None:
    assert control(proxy, "GET") == (200, {"latency_ms": L_MS, "jitter_ms": 0.0})
    assert control(proxy, "POST", b'{"latency_ms": 80, "jitter_ms": 5}') == (
        200,
        {"latency_ms": 80.0, "jitter_ms": 5.0},
    )
    assert (proxy.latency_ms, proxy.jitter_ms) == (80.0, 5.0)
    assert control(proxy, "POST", b'{"latency_ms": null, "jitter_ms": 0}')[1] == {
        "latency_ms": 80.0,
        "jitter_ms": 0.0,
    }
    for bad in (
        b'{"latency_ms": -1}',
        b'{"latency_ms": "80"}',
        b'{"latency_ms": true}',
        b'{"jitter_ms": 1e999}',
        b'{"latency": 80}',
        b"{}",
        b"[80]",
        b"not json",
        b"",
    ):
        status, body = control(proxy, "POST", bad)
        assert status == 400, bad
        assert isinstance(body.get("error"), str) and body["error"], bad
    assert (proxy.latency_ms, proxy.jitter_ms) == (80.0, 0.0)


def test_stop_closes_everything(pg_server: EmbeddedPostgres) -> None:
    proxy = LatencyProxy(pg_server.host, pg_server.port, control_port=0)
    host, port = proxy.start()
    control_url = proxy.control_url
    assert control_url is not None
    conn = connect(proxy, autocommit=True)
    conn.execute("SELECT 1")
    assert proxy.stats().connections_open == 1
    proxy.stop()
    proxy.stop()  # idempotent
    assert proxy.stats().connections_open == 0
    assert not [t for t in threading.enumerate() if t.name == "latency-proxy"]
    control_port = int(control_url.rsplit(":", 1)[1])
    for address in ((host, port), ("127.0.0.1", control_port)):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(address, timeout=2).close()
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    conn.close()


def test_unreachable_upstream_fails_the_client_only() -> None:
    with LatencyProxy("127.0.0.1", free_port()) as proxy:
        with pytest.raises(psycopg.OperationalError):
            connect(proxy, connect_timeout=5)
        assert proxy.stats().upstream_errors == 1


def test_arguments_are_validated() -> None:
    assert validate_latency(20, 2) == (20.0, 2.0)
    assert parse_address("127.0.0.1:5432") == ("127.0.0.1", 5432)
    for bad_latency in ((-1, 0), (1, -0.5), (float("nan"), 0), ("5", 0), (True, 0)):
        with pytest.raises(ValueError):
            validate_latency(*bad_latency)
    for bad_address in ("5432", "host:", ":5432", "host:port", "host:70000"):
        with pytest.raises(ValueError):
            parse_address(bad_address)
    with pytest.raises(ValueError):
        LatencyProxy("127.0.0.1", 5432, latency_ms=-5)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.sut.latency_proxy", *args], capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize(
    "args",
    [
        ("--upstream", "nowhere"),
        ("--upstream", "127.0.0.1:5432", "--latency-ms", "-1"),
        ("--upstream", "127.0.0.1:5432", "--jitter-ms", "x"),
        ("--upstream", "127.0.0.1:5432", "--control-port", "70000"),
        ("--listen", "127.0.0.1:0"),
    ],
)
def test_cli_rejects_bad_arguments_in_one_line(args: tuple[str, ...]) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_cli_proxies_until_sigterm(pg_server: EmbeddedPostgres) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness.sut.latency_proxy",
            "--upstream",
            f"{pg_server.host}:{pg_server.port}",
            "--latency-ms",
            "5",
            "--control-port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        proxy_line, control_line = proc.stdout.readline().split(), proc.stdout.readline().split()
        assert proxy_line[0] == "proxy:" and control_line[0] == "control:"
        host, port = parse_address(proxy_line[1])
        with psycopg.connect(host=host, port=port, user="postgres", dbname="postgres") as conn:
            assert conn.execute("SELECT 41 + 1").fetchone() == (42,)
        request = urllib.request.Request(
            f"{control_line[1]}/latency", data=b'{"latency_ms": 7.5}', method="POST"
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.loads(response.read())["latency_ms"] == 7.5
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, port), timeout=2).close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
