"""Start and stop gateway processes (``python -m gateway_sim``) and wait until they serve."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from gateway_sim.cli import READY_PREFIX


def this_checkout_first() -> dict[str, str]:
    """The environment for a child interpreter (another venv's, say) that must run this very checkout's
    ``gateway_sim`` and ``harness``, whatever an environment built from another checkout has installed."""
    root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}


class GatewayError(RuntimeError):
    """A gateway process did not start; the message carries the end of its log."""


class GatewayProcess:
    """One gateway process; ``start()`` returns its base URL once it serves."""

    def __init__(
        self,
        db_url: str,
        args: Sequence[str] = (),
        *,
        worker_id: str = "0",
        host: str = "127.0.0.1",
        port: int = 0,
        log_path: Path | None = None,
        python: str | None = None,
    ) -> None:
        """``python``: the interpreter to run the gateway with (default this one), e.g. one whose path puts
        another checkout of ``gateway_sim`` first."""
        self.command = [
            python or sys.executable,  # the contextforge environment's interpreter for that registry
            "-m",
            "gateway_sim",
            "--db-url",
            db_url,
            "--host",
            host,
            "--port",
            str(port),
            "--worker-id",
            worker_id,
            *args,
        ]
        self.worker_id = worker_id
        self._own_log = log_path is None  # a temp file of ours: removed on stop, nothing is left behind
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="gateway-", suffix=".log")[1])
        self.url: str | None = None
        self.proc: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, timeout: float = 60.0) -> str:
        """Start the process and wait for its ``gateway: URL`` line."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("a", encoding="utf-8")
        self.proc = subprocess.Popen(
            self.command,
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**this_checkout_first(), "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # Ctrl-C reaches the harness, which stops its children in order
        )
        log.close()
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith(READY_PREFIX):
                self.url = line[len(READY_PREFIX) :].strip()
                # keep draining stdout so the child never blocks on a full pipe
                self.proc.stdout.close()
                return self.url
            if not line and self.proc.poll() is not None:
                break
        tail = self.log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        self.stop()
        raise GatewayError(f"gateway {self.worker_id} did not start: " + (" | ".join(tail) or "no output"))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (graceful: sessions removed, rows deleted), then SIGKILL after ``timeout``."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        with contextlib.suppress(Exception):
            if self.proc.stdout and not self.proc.stdout.closed:
                self.proc.stdout.close()
        if self._own_log:
            self.log_path.unlink(missing_ok=True)
        return self.proc.returncode

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
