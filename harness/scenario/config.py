"""The configuration of one run, built once and frozen: every knob by its table name, validated.

``harness run`` builds it from its flags, ``soak`` with its own defaults, a sweep in run mode from each grid
point; :class:`~harness.scenario.run.Run` takes it as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from gateway_sim.config import gateway_config
from gateway_sim.settings import config_values, default_executor_threads, fill_registry_knobs, gateway_argv
from harness import settings
from harness.commands.options import gateway_python
from harness.errors import UsageError
from harness.faults.spec import FaultSpec, check_fits
from harness.scenario.locust_proc import LocustOptions

RUN_KNOBS: tuple[str, ...] = (*settings.GATEWAY_KNOBS, "gateway_workers", "db", "docker_image", "db_url",
                              "max_connections", "latency_mode", *settings.LOAD_KNOBS, "drain",
                              "calibration_bursts", *settings.CONTEXTFORGE_KNOBS)
"""The knobs of a run, in the order ``summary.json``'s ``config`` lists them."""

RUN_DEFAULTS: dict[str, Any] = {**settings.HARNESS_DEFAULTS, "session_ttl": 30.0, "db_latency_ms": 10.0}
"""``harness run``'s own defaults: sessions expire after 30 s, and each refresh pays 10 ms, a database a few
milliseconds away, so the model's latency term is visible."""

MAX_DRAIN_SECONDS = 40.0


def default_out() -> Path:
    """``results/<UTC timestamp>``."""
    return Path("results") / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


@dataclass(frozen=True)
class RunConfig:
    """One run: its knobs (read-only), faults, the gateways to measure instead of starting, and the output."""

    knobs: Mapping[str, Any]
    out_dir: Path
    faults: tuple[FaultSpec, ...] = ()
    gateway_urls: tuple[str, ...] = ()
    gate: Path | None = None
    progress: bool = True

    @classmethod
    def build(cls, values: Mapping[str, Any], *, defaults: Mapping[str, Any] | None = None,
              faults: Sequence[FaultSpec] = (), gateway_urls: Sequence[str] = (), out_dir: Path | None = None,
              gate: Path | None = None, progress: bool = True) -> RunConfig:
        """Table defaults, then ``defaults`` (a command's own), then ``values``; raises :class:`UsageError`
        naming the flag when a knob is out of bounds or the faults do not fit the run."""
        knobs = {name: settings.SETTINGS[name].default_value() for name in RUN_KNOBS}
        knobs.update(RUN_DEFAULTS)
        knobs.update(defaults or {})
        knobs.update({k: v for k, v in values.items() if k in knobs})
        fill_registry_knobs(knobs)
        if knobs.get("executor_threads") is None:
            # not given: contextforge keeps Python's default executor (nothing forwarded); sim sizes its own to it
            knobs["executor_threads"] = None if knobs.get("registry_name") == "contextforge" \
                else default_executor_threads()
        if knobs.get("drain") is None:
            knobs["drain"] = min(MAX_DRAIN_SECONDS, 2 * knobs["cleanup_interval"] + 1)
        if gate is not None and not Path(gate).is_file():
            raise UsageError(f"--gate file {gate} does not exist")
        gateway_python(knobs)  # a missing contextforge environment: UsageError naming the setup command
        try:
            gateway_config({**knobs, "executor_threads": knobs["executor_threads"] or default_executor_threads()})
            settings.check(knobs)
            LocustOptions.from_knobs(knobs)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        urls = tuple(u.rstrip("/") for u in gateway_urls)
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise UsageError(f"--gateway-url must be an http(s):// URL, got {url!r}")
        started_db = not urls and not knobs["db_url"] and knobs["db"] in ("embedded", "docker")
        try:
            check_fits(list(faults), knobs["run_time"], started_db,
                       "an external gateway" if urls else knobs["db_url"] or knobs["db"])
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        return cls(knobs=MappingProxyType(knobs), out_dir=Path(out_dir) if out_dir else default_out(),
                   faults=tuple(faults), gateway_urls=urls, gate=gate, progress=progress)

    def replace(self, **knobs: Any) -> RunConfig:
        """The same run with some knobs changed (validated again)."""
        return RunConfig.build({**self.knobs, **knobs}, faults=self.faults, gateway_urls=self.gateway_urls,
                               out_dir=self.out_dir, gate=self.gate, progress=self.progress)

    @property
    def external(self) -> bool:
        """Whether the run measures gateways it did not start."""
        return bool(self.gateway_urls)

    @property
    def load(self) -> LocustOptions:
        """The Locust side."""
        return LocustOptions.from_knobs(self.knobs)

    @property
    def gateway_args(self) -> list[str]:
        """The argv every started gateway gets: the forwarded rows of the table."""
        return gateway_argv(self.knobs)

    @property
    def db_label(self) -> str:
        """``config.db``: ``url`` for ``--db-url``, the scheme for ``--db URL``, else ``embedded``/``docker``."""
        if self.knobs["db_url"]:
            return "url"
        db = str(self.knobs["db"])
        return db.split("://")[0] if "://" in db else db

    def reported(self) -> dict[str, Any]:
        """``summary.json``'s ``config``: every reported knob of the run, plus ``db`` (and ``docker_image``
        only when it is ``docker``)."""
        values = config_values(self.knobs, settings.rows(RUN_KNOBS))
        values["db"] = self.db_label
        if values["db"] != "docker":
            values["docker_image"] = None
        if values.get("executor_threads") is None:  # Python's default executor
            values["executor_threads"] = default_executor_threads()
        return values

    def registry_versions(self) -> dict[str, str]:
        """The registry's own package and version when it is not this project (``mcp-contextforge-gateway``)."""
        if self.knobs.get("registry_name") != "contextforge":
            return {}
        from harness.sut.contextforge_env import PACKAGE, find_env

        return {PACKAGE: find_env(self.knobs["contextforge_version"], self.knobs["contextforge_source"]).version}
