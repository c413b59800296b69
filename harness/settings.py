"""The harness's rows of the settings table, and :data:`SETTINGS`: the whole table, gateway rows included.

Parts: ``load`` (the Locust users; the locustfile's options come from these rows too), ``stack`` (what the
harness starts), ``run`` (how a run is driven and where it writes), ``capacity`` (bench, sweep and model).
Commands add flags with :func:`add` by row name, with their own defaults where a command needs another one
(the harness cleans up every 5 s, the gateway alone every 300 s); see :data:`HARNESS_DEFAULTS`.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway_sim.settings import (
    DRIVERS,
    GATEWAY_SETTINGS,
    STRATEGIES,
    Setting,
    add_settings,
    table,
)
from harness.sut.docker_engine import BUILD_SCRIPT, DEFAULT_IMAGE

LATENCY_MODES = ("server", "proxy")
SWEEP_MODES = ("bench", "run")
DEFAULT_RESERVED_CONNECTIONS = 3
"""Connections Postgres keeps for superusers and the harness's own sampling, left out of the model's budget."""


def parse_seconds(text: str, *, allow_zero: bool = False) -> float:
    """``90``, ``90s``, ``5m``, ``1h`` → seconds (as Locust's ``--run-time`` takes them); ``ValueError`` for
    anything else, a negative or non-finite time, and 0 unless ``allow_zero``. The one duration parser."""
    value = str(text).strip().lower()
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    try:
        seconds = float(value[:-1]) * units[value[-1]] if value and value[-1] in units else float(value)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration like 60, 60s, 5m or 1h") from None
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError(f"{text!r} must be a {'non-negative' if allow_zero else 'positive'} duration")
    return seconds


def duration_seconds(text: str) -> float:
    """A positive duration in seconds (see :func:`parse_seconds`)."""
    return parse_seconds(text)


duration_seconds.__name__ = "duration"


def session_lifetime(text: str) -> tuple[float, float]:
    """``"5-30"`` → (5.0, 30.0); ``"10"`` → (10.0, 10.0)."""
    lo_text, sep, hi_text = str(text).strip().partition("-")
    try:
        lo = float(lo_text)
        hi = float(hi_text) if sep else lo
    except ValueError:
        raise ValueError(f"--session-lifetime must look like 5-30 (seconds), got {text!r}") from None
    if lo <= 0 or hi < lo:
        raise ValueError(f"--session-lifetime needs 0 < MIN <= MAX, got {text!r}")
    return lo, hi


def gateway_urls(text: str) -> tuple[str, ...]:
    """``"http://a:1,http://b:2"`` → base URLs without a trailing slash."""
    urls: list[str] = []
    for item in (part.strip() for part in str(text).split(",")):
        if not item:
            continue
        parts = urlsplit(item)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"--gateway-urls needs http(s)://HOST:PORT URLs, got {item!r}")
        urls.append(item.rstrip("/"))
    return tuple(urls)


def _db_choice(value: str) -> None:
    if value not in ("embedded", "docker") and "://" not in value:
        raise ValueError(f"--db must be 'embedded', 'docker' or a postgresql:// URL, got {value!r}")


def _text(value: str) -> str:
    return value


def _ratio(name: str, default: float, help_text: str) -> Setting:
    return Setting(name, "load", float, default, help_text, minimum=0.0, maximum=1.0)


HARNESS_SETTINGS: tuple[Setting, ...] = (
    # load: the Locust users
    Setting("users", "load", int, 200, "concurrent Locust users", minimum=1),
    Setting("spawn_rate", "load", float, 50.0, "users started per second", above=0),
    Setting("run_time", "load", duration_seconds, 60.0, "how long the load runs: 60, 60s, 5m, 1h",
            aliases=("--duration",)),
    Setting("session_lifetime", "load", _text, "5-30", "seconds a session is held, MIN-MAX drawn uniformly",
            validate=session_lifetime),
    _ratio("abrupt_ratio", 0.2, "share of SSE sessions that end by dropping the socket mid-stream"),
    _ratio("abandon_ratio", 0.2, "share of Streamable HTTP sessions left without DELETE, for the TTL sweep"),
    _ratio("transport_mix", 0.8, "share of users on SSE; the rest use Streamable HTTP"),
    Setting("calls_per_session", "load", int, 3,
            "tools/list, tools/call and ping calls each session makes after initialize", minimum=0, maximum=100),
    Setting("locust_workers", "load", int, 0, "Locust worker processes (0: one local process; N: a master and N "
            "workers)", minimum=0),
    Setting("seed", "load", int, None, "seed for the load's random choices"),
    Setting("gateway_urls", "load", _text, "", "comma-separated gateway worker URLs; each new session picks the "
            "next (default: --host)", validate=gateway_urls, reported=False),
    Setting("client_session_log", "load", _text, "", "append one JSON line per ended session (client side) to "
            "this file", flag_name="--session-log", reported=False),
    Setting("observe_db_url", "load", _text, "", "the gateway's database: show the cleanup cycles observed there "
            "as CLEANUP rows (for a gateway without /admin/cycles; read-only, see docs/observe.md)", reported=False),
    Setting("observe_duration", "run", duration_seconds, 600.0, "how long harness observe watches: 90s, 10m, 1h "
            "(Ctrl-C stops early and still writes what it saw)", flag_name="--duration", metavar="DURATION",
            reported=False),
    Setting("observe_application_name", "run", _text, None, "count only connections whose application_name starts "
            "with NAME (harness observe; default: every other connection to the database)", metavar="NAME",
            flag_name="--application-name",
            reported=False),
    # stack: what the harness starts
    Setting("db", "stack", _text, "embedded", "embedded | docker | a postgresql:// URL", validate=_db_choice),
    Setting("docker_image", "stack", _text, DEFAULT_IMAGE,
            f"image for --db docker; where none can be pulled, build one with {BUILD_SCRIPT} TAG"),
    Setting("max_connections", "stack", int, 100, "max_connections of the server the harness starts", minimum=1),
    Setting("gateway_workers", "stack", int, 1, "gateway processes sharing the database", minimum=1),
    Setting("latency_mode", "stack", _text, "server",
            "latency inside Postgres per refresh statement (server) or per round trip with a TCP proxy (proxy)",
            choices=LATENCY_MODES),
    Setting("log_dir", "stack", Path, None, "keep gateway logs here", reported=False),
    Setting("contextforge_version", "stack", _text, "1.1.0", "--registry contextforge: the release to run (its "
            "environment is built by 'harness contextforge setup --version V')", reported=False),
    Setting("contextforge_source", "stack", Path, None, "--registry contextforge: run the environment built by "
            "'harness contextforge setup --source PATH' instead", reported=False),
    Setting("state", "stack", Path, None, "where to record the addresses for 'harness latency'", reported=False),
    # run: how a harness run is driven and where it writes
    Setting("gateway_url", "run", _text, None, "measure this running gateway instead of starting one (add --db-url "
            "for pg_stat_activity, calibration and the leak check)", reported=False),
    Setting("out", "run", Path, None, "results directory", reported=False),
    Setting("drain", "run", duration_seconds, None,
            "after the load, seconds to let cleanup catch up (default 2 × cleanup interval + 1)"),
    Setting("calibration_bursts", "run", int, 5,
            "the gateway's CPU calibrations taken under the load, each right after a cleanup cycle, from the end "
            "of the ramp; the model uses their medians (0: only the one before the load)", minimum=0),
    Setting("gate", "run", Path, None, "gate the results with this thresholds TOML file", reported=False),
    Setting("no_progress", "run", bool, False, "no live display (plain lines instead)", switch=True, reported=False),
    Setting("sample_every", "run", duration_seconds, 5.0,
            "seconds between samples of the gateways' RSS, fds and tasks"),
    # capacity: bench, sweep and model
    Setting("sessions", "capacity", int, 1000, "connected sessions to refresh", minimum=1),
    Setting("check_ms", "capacity", float, 0.0, "cost of one phase-1 check, ms (the same as --cpu-check-ms)",
            minimum=0),
    Setting("cpu_refresh_ms", "capacity", float, 0.0, "gateway CPU of one refresh, ms (the model's CPU roof)",
            minimum=0),
    Setting("burst_refresh_ms", "capacity", float, 0.0,
            "wall time per refresh of a zero-latency burst at the cycle's concurrency, ms (the CPU roof when "
            "the database's side of the work is the larger)", minimum=0),
    Setting("cpu_check_ms", "capacity", float, 0.0, "gateway CPU of one phase-1 check, ms", minimum=0),
    Setting("cpu_remove_ms", "capacity", float, 0.0,
            "gateway work of one phase-1 removal besides its DELETE round trip, ms", minimum=0),
    Setting("expiry_ms", "capacity", float, 0.0,
            "the TTL sweep each cycle starts with (one DELETE of the expired rows), ms", minimum=0),
    Setting("delete_ms", "capacity", float, 0.0, "wall time of one row DELETE round trip, ms", minimum=0),
    Setting("disconnected", "capacity", int, 0, "disconnected sessions phase 1 removes in the cycle", minimum=0),
    Setting("disconnected_ratio", "capacity", float, 0.0,
            "bench: share of the synthetic sessions marked disconnected before each cycle", minimum=0, maximum=1),
    Setting("reserved_connections", "capacity", int, DEFAULT_RESERVED_CONNECTIONS,
            "connections Postgres keeps for superusers and sampling", minimum=0),
    Setting("repeats", "capacity", int, 3,
            "measured cycles per point (bench: at least 9 where the model says < 100 ms)", minimum=1),
    Setting("max_point_seconds", "capacity", float, 60.0, "skip points whose model cycle exceeds this many seconds",
            minimum=0, aliases=("--max-seconds",)),
    Setting("json_out", "capacity", Path, None, "write {\"rows\": [...]} to this file", flag_name="--json",
            reported=False),
    Setting("print_json", "capacity", bool, False, "print {model_ms, c_eff, binding} as JSON", flag_name="--json",
            switch=True, reported=False),
    Setting("mode", "capacity", _text, "bench", "bench: cycles in-process; run: Locust through a harness run",
            choices=SWEEP_MODES),
    Setting("plan", "capacity", Path, None, "read the options from this TOML file", reported=False),
    Setting("target_cycle_ms", "capacity", float, None, "recommendation: cycle p95 target, ms", minimum=0),
    Setting("max_db_connections", "capacity", int, None, "recommendation: DB connection budget", minimum=1),
    Setting("extrapolate_sessions", "capacity", int, None,
            "recommendation: larger session counts to extrapolate to (default 10× the largest)", minimum=1),
)

SETTINGS: dict[str, Setting] = table((*GATEWAY_SETTINGS, *HARNESS_SETTINGS))
"""The whole table, by name."""

HARNESS_DEFAULTS: dict[str, Any] = {"cleanup_interval": 5.0, "db_latency_ms": 0.0, "db_jitter_ms": 0.0}
"""Where a command that starts gateways differs from the gateway alone: cycles every 5 s, latency set to 0."""

GATEWAY_KNOBS: tuple[str, ...] = (*(r.name for r in GATEWAY_SETTINGS if r.forward), "db_latency_ms", "db_jitter_ms")
"""The gateway rows ``harness run|up|soak`` take: the forwarded ones and the injected latency."""

LOAD_KNOBS: tuple[str, ...] = tuple(r.name for r in HARNESS_SETTINGS if r.part == "load"
                                    and r.name not in ("gateway_urls", "client_session_log", "observe_db_url"))
"""The load rows ``harness run`` and ``soak`` take."""

LOCUSTFILE_KNOBS: tuple[str, ...] = ("session_lifetime", "abrupt_ratio", "abandon_ratio", "transport_mix",
                                     "calls_per_session", "gateway_urls", "auth_token", "client_session_log",
                                     "observe_db_url")
"""The locustfile's own options (Locust has users, spawn rate and run time itself)."""

GRID_KNOBS: tuple[str, ...] = ("registry_name", "strategy", "driver", "sessions", "max_concurrent", "db_latency_ms",
                               "pool_size", "max_overflow", "executor_threads", "batch_size")
"""The knobs bench and sweep take as comma-separated lists: the axes of a grid."""

CONTEXTFORGE_KNOBS: tuple[str, ...] = ("contextforge_version", "contextforge_source")
"""Which environment ``--registry contextforge`` runs in."""

NOT_GIVEN: dict[str, Any] = {"strategy": None, "driver": None, "batch_size": None, "executor_threads": None}
"""Command-line defaults of the knobs whose absence matters: the sim-only ones (refused for contextforge, else the
table's defaults) and ``--executor-threads`` (not given: Python's default executor)."""


def rows(names: Iterable[str]) -> list[Setting]:
    """The rows of ``names``, in that order."""
    return [SETTINGS[name] for name in names]


def add(parser: argparse.ArgumentParser | Any, names: Iterable[str], defaults: Mapping[str, Any] | None = None,
        *, lists: Sequence[str] = (), required: Sequence[str] = (), suppress: bool = False,
        title: str | None = None) -> None:
    """Add the flags of ``names`` (in an argument group when ``title`` is given)."""
    target = parser.add_argument_group(title) if title else parser
    add_settings(target, rows(names), defaults, lists=lists, required=required, suppress=suppress)


def check(values: Mapping[str, Any], names: Iterable[str] | None = None) -> None:
    """Validate ``values`` (lists item by item) with their rows; raises ``ValueError`` naming the flag."""
    for name in names if names is not None else values:
        row = SETTINGS.get(name)
        if row is None:
            continue
        value = values.get(name)
        for item in value if isinstance(value, list | tuple) else [value]:
            row.check(item)


__all__ = ["DRIVERS", "GRID_KNOBS", "HARNESS_DEFAULTS", "SETTINGS", "STRATEGIES", "add", "check",
           "duration_seconds", "gateway_urls", "rows", "session_lifetime"]
