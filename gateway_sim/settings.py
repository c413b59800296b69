"""The settings table: every knob of the tool is one :class:`Setting` row, declared once.

A row gives the knob's name (the dataclass field, the ``config`` key and, with dashes, the flag), the type of
one value, its default, its help text, its validation and the part it configures:

- ``store``, ``registry``, ``gateway``: the gateway process (this package's rows, :data:`GATEWAY_SETTINGS`);
- ``load``, ``stack``, ``run``, ``capacity``: the harness and the Locust users (``harness.settings``).

Everything else derives from the rows: the flags of ``python -m gateway_sim`` and of every harness command, the
argv the harness forwards to gateway processes (:func:`gateway_argv`), the locustfile's options, and the
``config`` of ``summary.json`` and ``/admin/cycles`` (:func:`config_values`). Config dataclasses name their
fields after rows and validate them with :func:`check_fields`, so an error names the flag
(``--pool-size must be >= 1``).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from gateway_sim.allocator import DEFAULT_MMAP_THRESHOLD, validate_mmap_threshold
from gateway_sim.gc_tuning import DEFAULT_GC_THRESHOLD

PARTS = ("store", "registry", "gateway", "load", "stack", "run", "capacity")
GATEWAY_PARTS = ("store", "registry", "gateway")

APPLICATION_PREFIX = "mcp-gateway-sim"
"""The ``application_name`` of every gateway connection starts with this (``mcp-gateway-sim:WORKER``)."""

STRATEGIES = ("sequential", "gather", "bounded", "batched")
DRIVERS = ("thread", "async")
PHASE1_REMOVALS = ("per-session", "batched")
LOOPS = ("asyncio", "uvloop")
REGISTRIES = ("sim", "contextforge")
"""Built-in registries; ``package.module:factory`` names your own (see :mod:`gateway_sim.registry_api`)."""
SIM_ONLY = ("strategy", "driver", "batch_size")
"""Knobs only the sim registry has: ``None`` on a command line means not given."""
CONTEXTFORGE_FIXED = {"strategy": "bounded", "driver": "thread", "batch_size": 500}
"""What ContextForge's registry does in their place: a bounded gather of ORM refreshes in threads."""


def validate_registry_name(name: str) -> None:
    """Raise ``ValueError`` unless ``name`` is a built-in registry or ``package.module:factory``."""
    if name in REGISTRIES:
        return
    module, sep, attr = name.partition(":")
    if not sep or not attr.isidentifier() or not all(part.isidentifier() for part in module.split(".")):
        raise ValueError(f"--registry must be sim, contextforge or package.module:factory, got {name!r}")


def refuse_sim_only(values: Any) -> None:
    """``--strategy``, ``--driver`` or ``--batch-size`` given with ``--registry contextforge``: a ``ValueError``
    naming the flag (its registry always refreshes with a bounded gather of ORM calls in threads)."""
    get = values.get if isinstance(values, Mapping) else lambda name: getattr(values, name, None)
    if get("registry_name") != "contextforge":
        return
    for name in SIM_ONLY:
        if get(name) is not None:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} does not apply to --registry contextforge (its registry always refreshes "
                             "with a bounded gather of ORM calls in threads)")


def fill_registry_knobs(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with the sim-only knobs left unset filled in: the sim defaults, or what contextforge does."""
    fixed = CONTEXTFORGE_FIXED if values.get("registry_name") == "contextforge" else None
    for name in SIM_ONLY:
        if values.get(name) is None:
            values[name] = fixed[name] if fixed else GATEWAY[name].default_value()
    return values


def default_executor_threads() -> int:
    """Python's own default for ``ThreadPoolExecutor``: ``min(32, cpu + 4)``."""
    return min(32, (os.cpu_count() or 1) + 4)


@dataclass(frozen=True)
class Setting:
    """One knob. ``default`` may be a zero-argument callable (computed once per use)."""

    name: str
    part: str
    type: Callable[[str], Any]
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    above: float | None = None
    maximum: float | None = None
    validate: Callable[[Any], None] | None = None
    flag_name: str | None = None
    aliases: tuple[str, ...] = ()
    switch: bool = False
    forward: bool = True
    reported: bool = True
    command_line: bool = True
    metavar: str | None = None

    def __post_init__(self) -> None:
        if self.part not in PARTS:
            raise ValueError(f"setting {self.name}: part must be one of {', '.join(PARTS)}")

    @property
    def flag(self) -> str:
        """The command-line flag: ``pool_size`` → ``--pool-size`` unless the row names another."""
        return self.flag_name or "--" + self.name.replace("_", "-")

    def default_value(self) -> Any:
        """The default, computed if it is a callable."""
        return self.default() if callable(self.default) else self.default

    def check(self, value: Any) -> None:
        """Raise ``ValueError`` naming the flag when ``value`` is out of bounds (``None`` passes)."""
        if value is None or self.switch:
            return
        if self.choices and value not in self.choices:
            raise ValueError(f"{self.flag} must be one of {', '.join(self.choices)}, got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"{self.flag} must be >= {self.minimum:g}")
        if self.above is not None and value <= self.above:
            raise ValueError(f"{self.flag} must be > {self.above:g}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"{self.flag} must be <= {self.maximum:g}")
        if self.validate is not None:
            self.validate(value)

    def help_text(self, default: Any) -> str:
        """Help with the default the command uses."""
        if self.switch or default is None or default == "":
            return self.help
        shown = ",".join(str(v) for v in default) if isinstance(default, list) else default
        return f"{self.help} (default {shown})"


def _mmap_threshold(value: int) -> None:
    try:
        validate_mmap_threshold(value)
    except ValueError as exc:
        raise ValueError(f"--malloc-mmap-threshold {str(exc).removeprefix('malloc_mmap_threshold ')}") from None


def _text(value: str) -> str:
    return value


GATEWAY_SETTINGS: tuple[Setting, ...] = (
    # store: how the gateway talks to Postgres
    Setting("db_url", "store", _text, "", "postgresql:// URL of the session database (harness commands: an "
            "existing server, which wins over --db)", forward=False, reported=False),
    Setting("driver", "store", _text, "async",
            "thread: sync ORM in asyncio.to_thread (the real gateway); async: asyncpg engine", choices=DRIVERS),
    Setting("executor_threads", "store", int, default_executor_threads,
            "worker threads for the thread driver (Python's own default is min(32, cpu+4))", minimum=1),
    Setting("pool_size", "store", int, 20, "SQLAlchemy pool_size", minimum=1),
    Setting("max_overflow", "store", int, 10, "SQLAlchemy max_overflow", minimum=0),
    Setting("pool_timeout", "store", float, 30.0, "seconds to wait for a pooled connection", above=0),
    Setting("pool_pre_ping", "store", bool, False,
            "test each pooled connection on checkout and replace a dead one (default off: a dead connection fails "
            "its statement and the pool is invalidated)", switch=True),
    Setting("write_batch_ms", "store", float, 0.0,
            "async driver: gather the session inserts and deletes that arrive within this many ms into one "
            "statement each (0: one statement per session; each open and close then waits up to this long)",
            minimum=0),
    Setting("application_name", "store", _text, APPLICATION_PREFIX, "application_name of the gateway's connections",
            forward=False, reported=False, command_line=False),
    # registry: how the cleanup cycle runs
    Setting("strategy", "registry", _text, "bounded", "phase-2 refresh strategy", choices=STRATEGIES),
    Setting("max_concurrent", "registry", int, 20,
            "semaphore bound: refreshes in flight (bounded), chunks in flight (batched)", minimum=1),
    Setting("batch_size", "registry", int, 500,
            "ids per UPDATE for the batched strategy (at most --max-concurrent chunks in flight)", minimum=1),
    Setting("phase1_removal", "registry", _text, "per-session",
            "how phase 1 deletes the rows of gone sessions: per-session (one DELETE each, as upstream) or batched "
            "(one DELETE … = ANY(:ids) for all gone sessions of the cycle)", choices=PHASE1_REMOVALS),
    Setting("cleanup_interval", "registry", float, 300.0, "seconds between cleanup cycles", above=0),
    Setting("session_ttl", "registry", float, 3600.0,
            "seconds of inactivity after which the sweep deletes a session row", above=0),
    # gateway: the process itself
    Setting("host", "gateway", _text, "127.0.0.1", "address to bind", forward=False, reported=False),
    Setting("port", "gateway", int, 8000, "port to bind; 0 picks a free one", minimum=0, maximum=65535,
            forward=False, reported=False),
    Setting("sse_keepalive", "gateway", float, 15.0, "seconds between SSE keepalive events", above=0),
    Setting("db_latency_ms", "gateway", float, None,
            "latency added to each refresh (server mode) or round trip (proxy mode), ms", minimum=0, forward=False),
    Setting("db_jitter_ms", "gateway", float, None, "± jitter on that latency, ms", minimum=0, forward=False),
    Setting("cycle_log", "gateway", _text, None, "append each cycle record to this JSON-lines file",
            forward=False, reported=False),
    Setting("session_log", "gateway", _text, None,
            "append a JSON line per session created/removed (with the reason) to this file", forward=False,
            reported=False),
    Setting("cycle_history", "gateway", int, 200, "cycle records kept in memory for /admin/cycles", minimum=1),
    Setting("max_body_bytes", "gateway", int, 1_048_576, "largest accepted request body; larger gets 413",
            minimum=1),
    Setting("admin_enabled", "gateway", bool, True, "do not serve the /admin/* routes", flag_name="--no-admin",
            switch=True, forward=False, reported=False),
    Setting("auth_token", "gateway", _text, None, "require 'Authorization: Bearer TOKEN' on the MCP endpoints",
            reported=False),
    Setting("worker_id", "gateway", _text, "0", "name of this worker in records and metrics", forward=False,
            reported=False),
    Setting("loop", "gateway", _text, "asyncio",
            "event loop: asyncio (the standard one) or uvloop (opt-in, needs the uvloop package: pip install "
            "'mcp-cleanup-loadtest[uvloop]')", choices=LOOPS),
    Setting("malloc_mmap_threshold", "gateway", int, DEFAULT_MMAP_THRESHOLD,
            "pin glibc's mmap threshold at this many bytes so freed large blocks go back to the OS; 0 leaves "
            "glibc's moving threshold, under which RSS creeps up with churn", validate=_mmap_threshold),
    Setting("gc_threshold", "gateway", int, DEFAULT_GC_THRESHOLD,
            "after start-up, freeze the heap out of Python's garbage collector and collect its young generation "
            "every this many net allocations; 0 keeps Python's own (700, nothing frozen)", minimum=0),
    Setting("registry_name", "gateway", _text, "sim",
            "the session registry the gateway hosts: sim (this project's), contextforge (ContextForge's own "
            "SessionRegistry; needs 'harness contextforge setup') or package.module:factory",
            flag_name="--registry", validate=validate_registry_name),
    Setting("loop_executor_threads", "gateway", int, None, "size of the event loop's default executor (the "
            "--executor-threads given to a contextforge gateway); None leaves Python's default", minimum=1,
            forward=False, reported=False, command_line=False),
)


def default_field(row: Setting) -> Any:
    """A dataclass field whose default is the row's (a factory when the default is computed)."""
    return field(default_factory=row.default) if callable(row.default) else field(default=row.default)


def table(rows: Iterable[Setting]) -> dict[str, Setting]:
    """Rows by name; a name declared twice is an error."""
    out: dict[str, Setting] = {}
    for row in rows:
        if row.name in out:
            raise ValueError(f"setting {row.name} is declared twice")
        out[row.name] = row
    return out


GATEWAY = table(GATEWAY_SETTINGS)


def check_fields(config: Any, rows: Mapping[str, Setting]) -> None:
    """Validate every dataclass field of ``config`` that has a row (``__post_init__`` calls this)."""
    for f in fields(config):
        row = rows.get(f.name)
        if row is not None:
            row.check(getattr(config, f.name))


def add_settings(parser: argparse.ArgumentParser | Any, rows: Iterable[Setting],
                 defaults: Mapping[str, Any] | None = None, *, lists: Sequence[str] = (),
                 required: Sequence[str] = (), suppress: bool = False) -> None:
    """Add a flag per row. ``defaults`` overrides a row's default for this command; names in ``lists`` take a
    comma-separated list, names in ``required`` must be given; ``suppress`` leaves an option out of the
    namespace when it is not given."""
    defaults = defaults or {}
    for row in rows:
        if not row.command_line:
            continue
        default = defaults[row.name] if row.name in defaults else row.default_value()
        names = [row.flag, *row.aliases]
        if suppress:
            default = argparse.SUPPRESS
        if row.switch:
            action = "store_false" if row.default_value() is True else "store_true"
            parser.add_argument(*names, dest=row.name, action=action, default=default, help=row.help)
            continue
        convert = list_type(row) if row.name in lists else scalar_type(row)
        if row.name in lists and default is not None and not isinstance(default, list) and not suppress:
            default = [default]
        metavar = row.metavar or ("{" + ",".join(row.choices) + "}" if row.choices else None)
        parser.add_argument(*names, dest=row.name, type=convert, default=default, metavar=metavar,
                            required=row.name in required, help=row.help_text(None if suppress else default))


def scalar_type(row: Setting) -> Callable[[str], Any]:
    """An argparse ``type=`` converting one value (bounds are checked where the config is built)."""

    def convert(text: str) -> Any:
        try:
            return row.type(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {_type_name(row)}") from None

    convert.__name__ = _type_name(row)
    return convert


def list_of(convert: Callable[[str], Any], check: Callable[[Any], None] | None = None, *,
            name: str | None = None) -> Callable[[str], list[Any]]:
    """An argparse ``type=`` for ``a,b,c``: each item converted (and checked), one clear error per bad item."""
    label = name or getattr(convert, "__name__", "value")

    def parse(text: str) -> list[Any]:
        items = [part.strip() for part in text.split(",") if part.strip()]
        if not items:
            raise argparse.ArgumentTypeError("expected a comma-separated list, got nothing")
        values = []
        for item in items:
            try:
                value = convert(item)
            except (TypeError, ValueError):
                raise argparse.ArgumentTypeError(f"{item!r} is not a valid {label}") from None
            if check is not None:
                try:
                    check(value)
                except ValueError as exc:
                    raise argparse.ArgumentTypeError(f"{item!r}: {exc}") from None
            values.append(value)
        return values

    parse.__name__ = f"list of {label}"
    return parse


def list_type(row: Setting) -> Callable[[str], list[Any]]:
    """The list form of a row: ``a,b,c``, each item converted and checked like the row's single value."""
    return list_of(row.type, row.check, name=_type_name(row))


def _type_name(row: Setting) -> str:
    return {int: "int", float: "float"}.get(row.type, getattr(row.type, "__name__", "value").strip("_"))


def values_from(source: Any, rows: Iterable[Setting], **overrides: Any) -> dict[str, Any]:
    """The values of ``rows`` that a parsed namespace or a mapping carries (missing ones take the row's default)."""
    if isinstance(source, Mapping):
        out = {row.name: source[row.name] if row.name in source else row.default_value() for row in rows}
    else:
        out = {row.name: getattr(source, row.name, row.default_value()) for row in rows}
    out.update(overrides)
    return out


def gateway_argv(values: Mapping[str, Any]) -> list[str]:
    """The ``python -m gateway_sim`` options for the forwarded gateway knobs in ``values``.

    A contextforge gateway gets none of the sim-only knobs (it would refuse them).
    """
    out: list[str] = []
    skip = SIM_ONLY if values.get("registry_name") == "contextforge" else ()
    for row in GATEWAY_SETTINGS:
        if not row.forward or row.name not in values or row.name in skip:
            continue
        value = values[row.name]
        if row.switch:
            if value != row.default_value():
                out.append(row.flag)
        elif value is not None:
            out += [row.flag, str(value)]
    return out


def config_values(values: Mapping[str, Any], rows: Iterable[Setting]) -> dict[str, Any]:
    """The reported knobs among ``rows``, as ``config`` keys of ``summary.json`` and ``/admin/cycles``."""
    return {row.name: values.get(row.name) for row in rows if row.reported}
