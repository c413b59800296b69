"""``--db docker`` against a real Docker engine, with the image named by ``$MCP_LOADTEST_DOCKER_IMAGE``
(default ``postgres:16-alpine``; ``.ci/run`` builds a stand-in with ``scripts/build-postgres-image.sh``).

Tests marked ``docker`` skip, saying why, when no engine answers or the image is not there. The no-engine
test needs no engine and always runs.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from harness.cli import main
from harness.faults import injectors as faults
from harness.sut.docker_engine import (
    DEFAULT_IMAGE,
    LABEL,
    LABEL_HOST,
    LABEL_PID,
    DockerError,
    check_local_engine,
    remove_orphans,
)
from harness.sut.gateway_proc import GatewayProcess
from harness.sut.postgres import DockerPostgres, ProviderError
from harness.sut.stack import Stack, StackOptions
from tests.fakes import FakeContainer, FakeDockerClient
from tests.test_faults_gateway import INTERVAL, _assert_kept_and_recovered, _run_fault
from tests.test_sigterm import BENCH_TO_INTERRUPT, terminate_mid_run

IMAGE = os.environ.get("MCP_LOADTEST_DOCKER_IMAGE") or DEFAULT_IMAGE
HARNESS = [sys.executable, "-m", "harness"]


def _engine_problem() -> str | None:
    """Why the docker tests cannot run here, or None."""
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as exc:
        return f"no Docker engine answers ({str(exc).splitlines()[0][:120]})"
    try:
        client.images.get(IMAGE)
    except Exception:
        return (f"image {IMAGE} is not here: build it with scripts/build-postgres-image.sh {IMAGE} and set "
                "MCP_LOADTEST_DOCKER_IMAGE (.ci/run does both)")
    finally:
        client.close()
    return None


PROBLEM = _engine_problem()
needs_engine = pytest.mark.skipif(PROBLEM is not None, reason=PROBLEM or "")


def _ours(pid: int | None = None) -> list[str]:
    """Ids of our containers (of one owner pid), running or not."""
    label = f"{LABEL_PID}={pid}" if pid is not None else f"{LABEL}=1"
    out = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={label}"], capture_output=True, text=True,
                         timeout=30, check=True)
    return out.stdout.split()


@pytest.fixture(scope="module")
def container() -> Iterator[DockerPostgres]:
    """One container for the fault tests, started by the project's provider."""
    provider = DockerPostgres(IMAGE, max_connections=50)
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture
def docker_db_url(container: DockerPostgres) -> str:
    """A new database in the shared container (removed with the container)."""
    name = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(container.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(container.url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture
def docker_gateway(docker_db_url: str) -> Iterator[GatewayProcess]:
    """A gateway on that database with a short cleanup interval."""
    gateway = GatewayProcess(docker_db_url, ["--cleanup-interval", str(INTERVAL), "--sse-keepalive", "60"])
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


# --- without an engine -----------------------------------------------------------------------------
@pytest.mark.parametrize("command", [["run", "--run-time", "5s"], ["up", "--port", "0"], ["bench"]])
def test_no_engine_is_one_line_and_exit_1(tmp_path: Path, command: list[str]) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-such-docker.sock",
           "MCP_LOADTEST_STATE": str(tmp_path / "state.json")}
    out = subprocess.run([*HARNESS, *command, "--db", "docker", *(["--out", str(tmp_path / "r")]
                                                                  if command[0] == "run" else [])],
                         capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "no Docker engine answers" in lines[0] and "no-such-docker.sock" in lines[0], out.stderr


@pytest.mark.parametrize("address, local", [
    ("unix:///var/run/docker.sock", True), ("tcp://127.0.0.1:2375", True), ("tcp://localhost:2376", True),
    ("tcp://[::1]:2375", True), ("tcp://10.0.0.5:2375", False), ("ssh://builder@ci-host", False),
])
def test_only_an_engine_on_this_machine_is_accepted(address: str, local: bool) -> None:
    if local:
        check_local_engine(address)
    else:
        with pytest.raises(DockerError, match="needs an engine on this machine"):
            check_local_engine(address)


def test_orphans_of_dead_owners_on_this_host_are_removed() -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    labels = {"dead": {LABEL: "1", LABEL_PID: str(dead.pid), LABEL_HOST: host},
              "alive": {LABEL: "1", LABEL_PID: str(os.getpid()), LABEL_HOST: host},
              "elsewhere": {LABEL: "1", LABEL_PID: str(dead.pid), LABEL_HOST: host + "-other"},
              "unlabelled-pid": {LABEL: "1"}}
    client = FakeDockerClient([FakeContainer(name, lab) for name, lab in labels.items()])
    assert remove_orphans(client) == ["dead"]
    assert [c.short_id for c in client.containers.items] == ["alive", "elsewhere", "unlabelled-pid"]


# --- on a real engine ------------------------------------------------------------------------------
@pytest.mark.docker
@needs_engine
def test_run_end_to_end_in_a_container(tmp_path: Path) -> None:
    out = tmp_path / "results"
    before = set(_ours(os.getpid()))  # the module's shared container, if it is up already
    code = main(["run", "--db", "docker", "--docker-image", IMAGE, "--max-connections", "60",
                 "--run-time", "12s", "--users", "20", "--spawn-rate", "10", "--cleanup-interval", "1",
                 "--session-lifetime", "2-4", "--session-ttl", "4", "--db-latency-ms", "5", "--drain", "5",
                 "--no-progress", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    config, cleanup, pool, sessions, locust = (summary[k] for k in ("config", "cleanup", "pool", "sessions", "locust"))
    assert config["db"] == "docker" and config["docker_image"] == IMAGE
    assert cleanup["cycles"] >= 5 and cleanup["refresh_errors"] == 0
    assert cleanup["calibration"]["refresh_ms"] >= 5 * 0.8  # the server-side trigger's 5 ms is paid in there
    assert pool["max_connections"] == 60  # -c max_connections reached the server
    assert pool["pg_connections_peak"] >= 1  # pg_stat_activity read through the mapped port
    assert sessions["created"] > 0 and sessions["leaked"] == 0 and sessions["balanced"]
    assert locust["requests"] > 0 and locust["failure_ratio"] < 0.01
    assert set(_ours(os.getpid())) <= before  # the run's container is gone


@pytest.mark.docker
@needs_engine
def test_restart_db_in_a_container_keeps_connected_sessions(
        container: DockerPostgres, docker_db_url: str, docker_gateway: GatewayProcess) -> None:
    assert make_url(container.url).host == "127.0.0.1"  # loopback, never the bridge address
    before = (container.container_id, container.port)
    assert docker_gateway.url is not None
    target = faults.FaultTarget(docker_db_url, [docker_gateway.url], restart=faults.local_restart(container))
    entry, payload = _run_fault(docker_gateway.url, "restart-db@0.5:2", target)
    assert entry["end_t"] - entry["start_t"] >= 1.5
    assert entry["refresh_errors_during"] + entry["cycle_errors_during"] > 0  # the restart was felt
    _assert_kept_and_recovered(entry, payload, docker_db_url)  # no connected session removed, rows kept
    assert (container.container_id, container.port) == before  # the same container on the same port
    assert docker_gateway.alive()


@pytest.mark.docker
@needs_engine
def test_kill_backends_in_a_container(docker_db_url: str, docker_gateway: GatewayProcess) -> None:
    assert docker_gateway.url is not None
    entry, payload = _run_fault(docker_gateway.url, "kill-backends@0.5",
                                faults.FaultTarget(docker_db_url, [docker_gateway.url]))
    assert entry["detail"]["terminated"] >= 1
    _assert_kept_and_recovered(entry, payload, docker_db_url)
    assert payload["pool"]["invalidations_total"] >= 1


@pytest.mark.docker
@needs_engine
def test_proxy_latency_to_the_container_stays_on_loopback() -> None:
    latency = 25.0
    stack = Stack(StackOptions(db="docker", docker_image=IMAGE, latency_mode="proxy", db_latency_ms=latency))
    assert isinstance(stack.provider, DockerPostgres)
    try:
        stack.start()
        container_id = stack.provider.container_id
        assert "@127.0.0.1:" in stack.db_url and "@127.0.0.1:" in stack.gateway_db_url
        assert stack.proxy.upstream[0] == "127.0.0.1"

        def round_trip_ms(url: str) -> float:
            with psycopg.connect(url) as conn:
                conn.execute("SELECT 1")
                started = time.perf_counter()
                for _ in range(5):
                    conn.execute("SELECT 1")
                return (time.perf_counter() - started) * 1000 / 5

        proxied, direct = round_trip_ms(stack.gateway_db_url), round_trip_ms(stack.db_url)
        assert proxied >= 0.8 * latency and direct < proxied / 2
    finally:
        stack.stop()
    assert container_id and container_id[:12] not in _ours(os.getpid())


@pytest.mark.docker
@needs_engine
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_to_up_removes_its_container(tmp_path: Path, sig: signal.Signals) -> None:
    env = {**os.environ, "MCP_LOADTEST_STATE": str(tmp_path / "state.json")}
    proc = subprocess.Popen([*HARNESS, "up", "--db", "docker", "--docker-image", IMAGE, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = []
        assert proc.stdout is not None
        while not lines or not lines[-1].startswith("running"):
            line = proc.stdout.readline()
            assert line, "harness up ended: " + " | ".join(lines)
            lines.append(line.strip())
        database = next(x.split(" ", 1)[1] for x in lines if x.startswith("database: "))
        assert "@127.0.0.1:" in database
        assert len(_ours(proc.pid)) == 1
        if sig == signal.SIGTERM:  # and restart-db through up's control directory: docker stop/start
            out = subprocess.run([*HARNESS, "fault", "restart-db@0:1"], capture_output=True, text=True, timeout=120,
                                 env=env)
            assert out.returncode == 0 and "restart-db@0:1 end" in out.stdout, out.stdout + out.stderr
            with psycopg.connect(database, connect_timeout=10) as conn:
                assert conn.execute("SELECT count(*) FROM mcp_sessions").fetchone() == (0,)  # the schema was kept
            assert len(_ours(proc.pid)) == 1
        proc.send_signal(sig)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert _ours(proc.pid) == []
    assert not (tmp_path / "state.json").exists()


@pytest.mark.docker
@needs_engine
def test_gateway_failing_after_the_container_started_removes_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "MCP_LOADTEST_STATE": str(tmp_path / "state.json")}
        proc = subprocess.Popen([*HARNESS, "up", "--db", "docker", "--docker-image", IMAGE, "--port", str(port)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "Traceback" not in err, err
    assert _ours(proc.pid) == []


@pytest.mark.docker
@needs_engine
def test_sigterm_to_bench_removes_its_container(tmp_path: Path) -> None:
    pid = terminate_mid_run([*BENCH_TO_INTERRUPT, "--db", "docker", "--docker-image", IMAGE],
                            lambda proc: bool(_ours(proc.pid)), tmp_path)
    assert _ours(pid) == []


@pytest.mark.docker
@needs_engine
def test_bench_runs_on_docker(tmp_path: Path) -> None:
    out = subprocess.run([*HARNESS, "bench", "--db", "docker", "--docker-image", IMAGE, "--sessions", "50",
                          "--strategy", "bounded", "--db-latency-ms", "5", "--repeats", "1",
                          "--json", str(tmp_path / "bench.json")], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    rows: list[dict[str, Any]] = json.loads((tmp_path / "bench.json").read_text())["rows"]
    assert len(rows) == 1 and rows[0]["measured_ms"] > 0


@pytest.mark.docker
@needs_engine
def test_missing_image_is_one_line_and_exit_1(tmp_path: Path) -> None:
    missing = "mcp-loadtest-no-such-image:0"
    env = {**os.environ, "MCP_LOADTEST_STATE": str(tmp_path / "state.json")}
    out = subprocess.run([*HARNESS, "up", "--db", "docker", "--docker-image", missing, "--port", "0"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert missing in lines[0] and "--docker-image" in lines[0] and "build-postgres-image.sh" in lines[0]


@pytest.mark.docker
@needs_engine
def test_not_ready_in_time_shows_the_log_and_removes_the_container() -> None:
    provider = DockerPostgres(IMAGE, ready_timeout=0.2)
    before = set(_ours(os.getpid()))
    with pytest.raises(ProviderError) as failure:
        provider.start()
    message = str(failure.value)
    assert "not ready" in message and "within 0.2 s" in message and "last log lines" in message
    assert "\n" not in message
    assert set(_ours(os.getpid())) <= before and provider.container_id is None
