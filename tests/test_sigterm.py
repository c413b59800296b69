"""SIGTERM while the harness holds a database it started: the clean-up runs as after Ctrl-C.

The unit tests send SIGTERM to this process with the guard installed; the real-part test sends it to a
``harness bench`` on the embedded Postgres and then looks for the server and its data directory.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from harness.sut.sigterm import TerminateAsInterrupt

HARNESS = [sys.executable, "-m", "harness"]


@pytest.fixture
def guard() -> Iterator[TerminateAsInterrupt]:
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    installed = TerminateAsInterrupt()
    try:
        yield installed
    finally:
        installed.remove()
        signal.signal(signal.SIGTERM, previous)


def test_sigterm_outside_a_loop_raises_keyboard_interrupt(guard: TerminateAsInterrupt) -> None:
    guard.install()
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    guard.remove()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_sigterm_inside_asyncio_run_cancels_the_main_task_and_its_clean_up_runs(guard: TerminateAsInterrupt) -> None:
    cleaned: list[str] = []

    async def work() -> None:
        try:
            asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
            await asyncio.sleep(30)
        finally:
            await asyncio.sleep(0)  # the clean-up may still await
            cleaned.append("done")

    guard.install()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(work())
    assert cleaned == ["done"] and time.monotonic() - started < 10


def test_a_second_sigterm_during_the_clean_up_is_ignored(guard: TerminateAsInterrupt) -> None:
    guard.install()
    cleaned = False
    with pytest.raises(KeyboardInterrupt):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # would end the process without the guard
            time.sleep(0.05)
            cleaned = True
    assert cleaned


def test_a_command_with_its_own_sigterm_handler_keeps_it(guard: TerminateAsInterrupt) -> None:
    def own(signum: int, frame: object) -> None:
        return None

    signal.signal(signal.SIGTERM, own)
    guard.install()
    assert signal.getsignal(signal.SIGTERM) is own
    guard.remove()
    assert signal.getsignal(signal.SIGTERM) is own


def _servers_under(root: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if str(root) in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


BENCH_TO_INTERRUPT = ["bench", "--sessions", "2000", "--strategy", "sequential", "--db-latency-ms", "5",
                      "--repeats", "3"]
"""A bench that measures for longer than the tests wait before they send SIGTERM."""


def terminate_mid_run(args: list[str], holds_server: Callable[[subprocess.Popen[str]], bool], cwd: Path,
                      env: dict[str, str] | None = None) -> int:
    """Start ``harness ARGS``, wait until it holds its server and 5 s more, send SIGTERM, and check the exit:
    130 with ``interrupted`` and no traceback, within 60 s. Returns the command's pid."""
    proc = subprocess.Popen([*HARNESS, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=cwd, env=env)
    try:
        deadline = time.monotonic() + 60
        while not holds_server(proc):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        time.sleep(5)  # into the measurement: the server is up and in use
        assert proc.poll() is None
        proc.terminate()
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    return proc.pid


def test_sigterm_to_bench_stops_its_embedded_postgres_and_removes_its_data() -> None:
    # the data directory goes under a fresh TMPDIR, so this run's server is told apart from any other
    root = Path(tempfile.mkdtemp(prefix="sigterm-"))
    root.chmod(0o755)  # the embedded server runs as its own user when the tests run as root
    try:
        terminate_mid_run(BENCH_TO_INTERRUPT, lambda _proc: bool(_servers_under(root)), root,
                          {**os.environ, "TMPDIR": str(root)})
        assert _servers_under(root) == []
        assert not list(root.glob("mcp-loadtest-pg-*")), "the data directory was left behind"
    finally:
        for server in _servers_under(root):
            server.kill()
        subprocess.run(["rm", "-rf", str(root)], check=False)
