"""What ``--db docker`` needs from the Docker engine besides testcontainers: one-line errors, the image
check, the labels that mark the harness's containers, and removal of those a dead harness left behind.

Every container the harness starts carries ``mcp-cleanup-loadtest=1`` plus the owning process's pid and
host name, so ``docker ps -a --filter label=mcp-cleanup-loadtest`` lists them and a later start can remove
the ones whose owner is gone (a ``kill -9``). The harness does not rely on testcontainers' Ryuk reaper.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from typing import Any
from urllib.parse import urlsplit

import psutil

from harness.errors import UsageError

LABEL = "mcp-cleanup-loadtest"
LABEL_PID = f"{LABEL}.pid"
LABEL_HOST = f"{LABEL}.host"
DEFAULT_IMAGE = "postgres:16-alpine"
BUILD_SCRIPT = "scripts/build-postgres-image.sh"


class DockerError(RuntimeError):
    """The engine refused or is missing; the message is one line."""


def one_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (docker-py's explanation when it has one), shortened."""
    text = str(getattr(exc, "explanation", None) or exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 1] + "…"


def engine_address() -> str:
    """Where docker-py looks for the engine: ``$DOCKER_HOST`` or the default socket."""
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def _os_error(exc: BaseException, depth: int = 0) -> OSError | None:
    """The socket error under docker-py's and requests' wrappers, if there is one."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc
    if depth > 6:
        return None
    nested = [exc.__cause__, exc.__context__, *(a for a in exc.args if isinstance(a, BaseException | tuple))]
    for inner in nested:
        for candidate in inner if isinstance(inner, tuple) else (inner,):
            if isinstance(candidate, BaseException) and (found := _os_error(candidate, depth + 1)) is not None:
                return found
    return None


def check_local_engine(address: str | None = None) -> None:
    """:class:`DockerError` when the engine is on another host: its published ports would not be on our loopback."""
    parts = urlsplit(address or engine_address())
    if parts.scheme in ("unix", "npipe", ""):
        return
    if parts.hostname not in ("localhost", "127.0.0.1", "::1"):
        raise DockerError(f"--db docker needs an engine on this machine (connections stay on 127.0.0.1); "
                          f"DOCKER_HOST is {address or engine_address()}")


def no_engine(exc: BaseException) -> DockerError:
    """The error for an engine that does not answer: where it was looked for and the socket's complaint."""
    cause = _os_error(exc)
    reason = cause.strerror if cause is not None else one_line(exc)
    hint = ("join the docker group or run as root" if cause is not None and cause.errno == errno.EACCES
            else "start dockerd or point DOCKER_HOST at one")
    return DockerError(f"--db docker: no Docker engine answers at {engine_address()} ({reason}); {hint}")


def ensure_image(client: Any, image: str) -> None:
    """Pull ``image`` unless the engine has it; :class:`DockerError` naming it when neither works."""
    import docker.errors

    try:
        client.images.get(image)
        return
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.APIError as exc:
        if exc.is_client_error():  # an invalid reference: bad input, not a failing engine
            raise UsageError(f"--docker-image {image!r}: {one_line(exc)}") from None
        raise DockerError(f"--db docker: the engine cannot look up image {image}: {one_line(exc)}") from None
    try:
        client.images.pull(image)
    except docker.errors.DockerException as exc:
        raise DockerError(
            f"--db docker: image {image} is not here and cannot be pulled ({one_line(exc, 120)}); pass "
            f"--docker-image IMAGE with one this engine has, or build a stand-in with {BUILD_SCRIPT} TAG"
        ) from None


def owner_labels() -> dict[str, str]:
    """The labels of a container owned by this process."""
    return {LABEL: "1", LABEL_PID: str(os.getpid()), LABEL_HOST: socket.gethostname()}


def ours(client: Any) -> list[Any]:
    """Every container (running or not) that carries the harness's label."""
    return list(client.containers.list(all=True, filters={"label": f"{LABEL}=1"}))


def remove_orphans(client: Any) -> list[str]:
    """Remove our containers whose owning process on this host is gone; their short ids."""
    removed = []
    host = socket.gethostname()
    for container in ours(client):
        labels = container.labels or {}
        try:
            pid = int(labels.get(LABEL_PID, ""))
        except ValueError:
            continue
        if labels.get(LABEL_HOST) != host or psutil.pid_exists(pid):
            continue
        with contextlib.suppress(Exception):
            container.remove(force=True, v=True)
            removed.append(container.short_id)
    return removed

