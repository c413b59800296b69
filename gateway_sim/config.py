"""The gateway's configuration: one frozen dataclass, built from CLI arguments in one place."""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, field, fields

from gateway_sim.allocator import DEFAULT_MMAP_THRESHOLD, validate_mmap_threshold

STRATEGIES = ("sequential", "gather", "bounded", "batched")
DRIVERS = ("thread", "async")


def default_executor_threads() -> int:
    """Python's own default for ``ThreadPoolExecutor``: ``min(32, cpu + 4)``."""
    return min(32, (os.cpu_count() or 1) + 4)


@dataclass(frozen=True)
class RegistryConfig:
    """How the cleanup cycle runs."""

    strategy: str = "bounded"
    max_concurrent: int = 20
    batch_size: int = 500
    cleanup_interval: float = 300.0
    session_ttl: float = 3600.0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.max_concurrent < 1:
            raise ValueError("max_concurrent must be >= 1")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if self.cleanup_interval <= 0:
            raise ValueError("cleanup_interval must be > 0")
        if self.session_ttl <= 0:
            raise ValueError("session_ttl must be > 0")


@dataclass(frozen=True)
class StoreConfig:
    """How the gateway talks to Postgres."""

    db_url: str = ""
    driver: str = "async"
    pool_size: int = 20
    max_overflow: int = 10
    pool_timeout: float = 30.0
    executor_threads: int = field(default_factory=default_executor_threads)
    pool_pre_ping: bool = False
    application_name: str = "mcp-gateway-sim"

    def __post_init__(self) -> None:
        if self.driver not in DRIVERS:
            raise ValueError(f"driver must be one of {', '.join(DRIVERS)}, got {self.driver!r}")
        if self.pool_size < 1:
            raise ValueError("pool_size must be >= 1")
        if self.max_overflow < 0:
            raise ValueError("max_overflow must be >= 0")
        if self.pool_timeout <= 0:
            raise ValueError("pool_timeout must be > 0")
        if self.executor_threads < 1:
            raise ValueError("executor_threads must be >= 1")


@dataclass(frozen=True)
class GatewayConfig:
    """Everything one gateway process needs."""

    store: StoreConfig
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    host: str = "127.0.0.1"
    port: int = 8000
    sse_keepalive: float = 15.0
    db_latency_ms: float | None = None
    db_jitter_ms: float | None = None
    cycle_log: str | None = None
    session_log: str | None = None
    cycle_history: int = 200
    max_body_bytes: int = 1_048_576
    admin_enabled: bool = True
    auth_token: str | None = None
    worker_id: str = "0"
    malloc_mmap_threshold: int = DEFAULT_MMAP_THRESHOLD

    def __post_init__(self) -> None:
        validate_mmap_threshold(self.malloc_mmap_threshold)
        if self.sse_keepalive <= 0:
            raise ValueError("sse_keepalive must be > 0")
        if self.cycle_history < 1:
            raise ValueError("cycle_history must be >= 1")
        for name in ("db_latency_ms", "db_jitter_ms"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0")


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """Driver and pool knobs, shared by the gateway, ``harness run`` and ``harness bench``."""
    parser.add_argument(
        "--driver",
        choices=DRIVERS,
        default="async",
        help="thread: sync ORM in asyncio.to_thread (the real gateway); async: asyncpg engine",
    )
    parser.add_argument(
        "--executor-threads",
        type=int,
        default=default_executor_threads(),
        help="worker threads for the thread driver (default: Python's min(32, cpu+4))",
    )
    parser.add_argument("--pool-size", type=int, default=20, help="SQLAlchemy pool_size (default 20)")
    parser.add_argument("--max-overflow", type=int, default=10, help="SQLAlchemy max_overflow (default 10)")
    parser.add_argument(
        "--pool-timeout",
        type=float,
        default=30.0,
        help="seconds to wait for a pooled connection (default 30)",
    )
    parser.add_argument(
        "--pool-pre-ping",
        action="store_true",
        help="test each pooled connection on checkout and replace a dead one (default off: a dead "
        "connection fails its statement and the pool is invalidated)",
    )


def add_registry_arguments(parser: argparse.ArgumentParser, *, cleanup_interval: float = 300.0) -> None:
    """Cleanup-cycle knobs, shared by the gateway and ``harness run``."""
    parser.add_argument(
        "--strategy", choices=STRATEGIES, default="bounded", help="phase-2 refresh strategy (default bounded)"
    )
    parser.add_argument(
        "--max-concurrent", type=int, default=20, help="semaphore bound for the bounded strategy (default 20)"
    )
    parser.add_argument("--batch-size", type=int, default=500, help="ids per UPDATE for the batched strategy")
    parser.add_argument(
        "--cleanup-interval",
        type=float,
        default=cleanup_interval,
        help=f"seconds between cleanup cycles (default {cleanup_interval:g})",
    )
    parser.add_argument(
        "--session-ttl",
        type=float,
        default=3600.0,
        help="seconds of inactivity after which the sweep deletes a session row (default %(default)s)",
    )


def store_config_from_args(args: argparse.Namespace, db_url: str, **overrides: object) -> StoreConfig:
    """Build a :class:`StoreConfig` from parsed arguments."""
    values = {
        "db_url": db_url,
        "driver": args.driver,
        "pool_size": args.pool_size,
        "max_overflow": args.max_overflow,
        "pool_timeout": args.pool_timeout,
        "executor_threads": args.executor_threads,
        "pool_pre_ping": getattr(args, "pool_pre_ping", False),
    }
    values.update(overrides)
    return StoreConfig(**values)  # type: ignore[arg-type]


def registry_config_from_args(args: argparse.Namespace) -> RegistryConfig:
    """Build a :class:`RegistryConfig` from parsed arguments."""
    names = {f.name for f in fields(RegistryConfig)}
    return RegistryConfig(**{name: getattr(args, name) for name in names})


def as_flag_message(exc: ValueError) -> str:
    """A config error worded with the command-line flag: ``pool_size must …`` becomes ``--pool-size must …``."""
    return re.sub(r"^([a-z_]+) must", lambda m: f"--{m[1].replace('_', '-')} must", str(exc))


def add_allocator_argument(parser: argparse.ArgumentParser) -> None:
    """``--malloc-mmap-threshold``, shared by the gateway and the harness commands that start one."""
    parser.add_argument(
        "--malloc-mmap-threshold",
        type=int,
        default=DEFAULT_MMAP_THRESHOLD,
        help="pin glibc's mmap threshold at this many bytes so freed large blocks go back to the OS; "
        "0 leaves glibc's moving threshold, under which RSS creeps up with churn (default %(default)s)",
    )
