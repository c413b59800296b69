"""The gateway's configuration: one frozen dataclass, built from CLI arguments in one place."""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, field, fields

from gateway_sim.allocator import DEFAULT_MMAP_THRESHOLD, validate_mmap_threshold

STRATEGIES = ("sequential", "gather", "bounded", "batched")
DRIVERS = ("thread", "async")
REGISTRIES = ("sim", "contextforge")
"""Built-in registries; ``package.module:factory`` names your own (see :mod:`gateway_sim.registry_api`)."""
SIM_DEFAULTS = {"strategy": "bounded", "driver": "async", "batch_size": 500}
"""Defaults of the knobs that only the sim registry has (``None`` on the command line means not given)."""
CONTEXTFORGE_FIXED = {"strategy": "bounded", "driver": "thread", "batch_size": 500}
"""What ContextForge's registry does in their place: a bounded gather of ORM refreshes in threads."""


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
    registry_name: str = "sim"
    #: the event loop's default executor size (``--executor-threads`` given); None leaves Python's default
    loop_executor_threads: int | None = None

    def __post_init__(self) -> None:
        validate_mmap_threshold(self.malloc_mmap_threshold)
        validate_registry_name(self.registry_name)
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
        default=None,
        help="thread: sync ORM in asyncio.to_thread (the real gateway); async: asyncpg engine (default async; "
        "sim registry only)",
    )
    parser.add_argument(
        "--executor-threads",
        type=int,
        default=None,
        help="worker threads for the thread driver; with --registry contextforge the event loop's default "
        "executor (default: Python's min(32, cpu+4))",
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
        "--registry",
        type=registry_name,
        default="sim",
        help="the session registry the gateway hosts: sim (this project's, default), contextforge "
        "(ContextForge's own SessionRegistry; needs 'harness contextforge setup') or package.module:factory",
    )
    parser.add_argument(
        "--strategy", choices=STRATEGIES, default=None,
        help="phase-2 refresh strategy (default bounded; sim registry only)",
    )
    parser.add_argument(
        "--max-concurrent", type=int, default=20, help="semaphore bound for the bounded strategy (default 20)"
    )
    parser.add_argument("--batch-size", type=int, default=None,
                        help="ids per UPDATE for the batched strategy (default 500; sim registry only)")
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


def validate_registry_name(name: str) -> None:
    """Raise ``ValueError`` unless ``name`` is a built-in registry or ``package.module:factory``."""
    if name in REGISTRIES:
        return
    module, sep, attr = name.partition(":")
    if not sep or not attr.isidentifier() or not all(part.isidentifier() for part in module.split(".")):
        raise ValueError(f"registry must be sim, contextforge or package.module:factory, got {name!r}")


def registry_name(text: str) -> str:
    """``--registry``'s argparse type."""
    try:
        validate_registry_name(text.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("registry must be ")) from None
    return text.strip()


def resolve_registry_knobs(args: argparse.Namespace) -> None:
    """Fill in the knobs left unset for ``args.registry``, in place.

    ``--strategy``, ``--driver`` and ``--batch-size`` given to a contextforge run are refused (a ``ValueError``
    naming the flag): its registry always runs a bounded gather of ORM refreshes in threads. ``--executor-threads``
    not given leaves ``args.loop_executor_threads`` None (Python's default executor) and sets
    ``args.executor_threads`` to Python's default size.
    """
    registry = getattr(args, "registry", "sim") or "sim"
    fixed = CONTEXTFORGE_FIXED if registry == "contextforge" else SIM_DEFAULTS
    for name, value in fixed.items():
        given = getattr(args, name, None)
        if given is not None and registry == "contextforge":
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} does not apply to --registry contextforge (its registry always refreshes "
                             "with a bounded gather of ORM calls in threads)")
        if given is None:
            setattr(args, name, value)
    given_threads = getattr(args, "executor_threads", None)
    args.loop_executor_threads = given_threads
    if given_threads is None:
        args.executor_threads = default_executor_threads()


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
