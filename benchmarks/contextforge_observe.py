"""Observe the real ContextForge gateway's cleanup from its Postgres while Locust holds SSE sessions on it.

Starts the embedded Postgres (the harness's provider) with a fresh database, ``mcpgateway`` from a
ContextForge environment on it (loopback only; authentication off: AUTH_REQUIRED=false,
MCP_CLIENT_AUTH_ENABLED=false and ALLOW_UNAUTHENTICATED_ADMIN=true, so an unauthenticated request on
127.0.0.1 is the platform admin and passes ``servers.use``), checks that ``GET /sse`` opens a session,
then runs Locust's SSE users while ``harness observe`` watches the database. ContextForge runs its own
cleanup task: a sweep and a cycle at start-up, then every 300 s (not configurable), so a run of 11 minutes
sees two cycles with sessions.

    python benchmarks/contextforge_observe.py --mcpgateway /work/venv-cfserver/bin/mcpgateway --run-time 11m
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from harness.commands.observe import print_observed
from harness.observe.sampler import Sampler
from harness.observe.session import finish
from harness.scenario.locust_proc import LocustOptions, LocustProcess, read_stats
from harness.settings import duration_seconds
from harness.sut.postgres import EmbeddedPostgres, free_port


def server_env(database_url: str) -> dict[str, str]:
    """ContextForge's settings for a loopback run on our database, authentication off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCPGATEWAY_", "DATABASE_"))}
    env.update({
        "DATABASE_URL": database_url,
        "JWT_SECRET_KEY": secrets.token_urlsafe(48),
        "AUTH_ENCRYPTION_SECRET": secrets.token_urlsafe(48),
        "EMAIL_AUTH_ENABLED": "false",
        "AUTH_REQUIRED": "false",
        "MCP_CLIENT_AUTH_ENABLED": "true",  # false means "identity from a proxy header" and makes everyone anonymous
        "ALLOW_UNAUTHENTICATED_ADMIN": "true",
        "CACHE_TYPE": "database",
        "MCPGATEWAY_UI_ENABLED": "false",
        "MCPGATEWAY_ADMIN_API_ENABLED": "false",
        "PLUGINS_ENABLED": "false",
        "COMPRESSION_ENABLED": "false",  # compressed SSE is held back until 500 bytes: no endpoint event
        "LOG_LEVEL": "INFO",
    })
    return env


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"mcpgateway exited with {proc.returncode} before answering /health")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.5)
    raise SystemExit(f"mcpgateway did not answer {url}/health in {timeout:g} s")


def first_sse_event(url: str) -> str:
    """The first lines ``GET /sse`` sends (raises on a non-200 answer)."""
    with urllib.request.urlopen(f"{url}/sse", timeout=10) as response:
        return "".join(response.readline().decode() for _ in range(2)).strip()


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server and the worker processes it forked (its own process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    time.sleep(1.0)
    with contextlib.suppress(ProcessLookupError):  # children that outlived their parent
        os.killpg(proc.pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mcpgateway", required=True, help="the mcpgateway executable of a ContextForge venv")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--spawn-rate", type=float, default=20.0)
    parser.add_argument("--run-time", type=duration_seconds, default=660.0)
    parser.add_argument("--session-lifetime", default="400-700")
    parser.add_argument("--out", type=Path, default=Path("results/contextforge-observe"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    pg = EmbeddedPostgres(max_connections=300)
    url = pg.start()
    proc: subprocess.Popen[bytes] | None = None
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE contextforge")
        db_url = make_url(url).set(database="contextforge").render_as_string(hide_password=False)
        cf_url = make_url(db_url).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
        port = free_port()
        gateway = f"http://127.0.0.1:{port}"
        with (args.out / "mcpgateway.log").open("wb") as log:
            proc = subprocess.Popen([args.mcpgateway, "--host", "127.0.0.1", "--port", str(port)],
                                    env=server_env(cf_url), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        wait_healthy(gateway, proc)
        print(f"mcpgateway healthy at {gateway}; GET /sse -> {first_sse_event(gateway)!r}", flush=True)
        sampler = Sampler(db_url)
        sampler.open()
        thread = threading.Thread(target=sampler.run, name="observe", daemon=True)
        thread.start()
        locust = LocustProcess(LocustOptions(users=args.users, spawn_rate=args.spawn_rate, run_time_s=args.run_time,
                                             session_lifetime=args.session_lifetime, transport_mix=1.0,
                                             calls_per_session=0, abrupt_ratio=0.2), [gateway], args.out)
        locust.start()
        locust.wait(args.run_time + 120)
        sampler.stop()
        thread.join(30)
        config = {"db": "observed", "gateway": "contextforge (mcpgateway)", "users": args.users,
                  "run_time": args.run_time, "session_lifetime": args.session_lifetime}
        summary, cycles = finish(sampler.observation, args.out, config, [],
                                 extra={"locust": read_stats(args.out / "locust_stats.csv")})
        print_observed(summary, args.out)
        for c in cycles:
            print(f"cycle at {c.start:.3f}: {c.duration_ms} ms, refreshed {c.refreshed}, waves {c.waves}, "
                  f"start from {c.start_from}, end from {c.end_from}, expired {c.expired}, "
                  f"removed one by one {c.removed_one_by_one}")
        lo = summary["locust"]
        print(f"locust requests / failures / rps: {lo['requests']} / {lo['failures']} / {lo['rps']}")
        return 0
    finally:
        if proc is not None:
            stop_group(proc)
        pg.stop()


if __name__ == "__main__":
    sys.exit(main())
