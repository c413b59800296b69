"""The gateway's configuration: frozen dataclasses whose fields are rows of the settings table.

Each field's default comes from its row in :mod:`gateway_sim.settings`; ``__post_init__`` validates with the
row's bounds, so every error names the flag. Arguments become a config in one place, :func:`gateway_config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway_sim.settings import (
    APPLICATION_PREFIX,
    DRIVERS,
    GATEWAY,
    GATEWAY_SETTINGS,
    STRATEGIES,
    check_fields,
    default_executor_threads,
    default_field,
    fill_registry_knobs,
    refuse_sim_only,
    values_from,
)

__all__ = [
    "DRIVERS",
    "STRATEGIES",
    "GatewayConfig",
    "RegistryConfig",
    "StoreConfig",
    "default_executor_threads",
    "gateway_cli_config",
    "gateway_config",
    "registry_config",
    "store_config",
]


def _default(name: str) -> Any:
    return default_field(GATEWAY[name])


@dataclass(frozen=True)
class RegistryConfig:
    """How the cleanup cycle runs."""

    strategy: str = _default("strategy")
    max_concurrent: int = _default("max_concurrent")
    batch_size: int = _default("batch_size")
    phase1_removal: str = _default("phase1_removal")
    cleanup_interval: float = _default("cleanup_interval")
    session_ttl: float = _default("session_ttl")

    def __post_init__(self) -> None:
        check_fields(self, GATEWAY)


@dataclass(frozen=True)
class StoreConfig:
    """How the gateway talks to Postgres."""

    db_url: str = _default("db_url")
    driver: str = _default("driver")
    pool_size: int = _default("pool_size")
    max_overflow: int = _default("max_overflow")
    pool_timeout: float = _default("pool_timeout")
    executor_threads: int = _default("executor_threads")
    pool_pre_ping: bool = _default("pool_pre_ping")
    application_name: str = _default("application_name")
    write_batch_ms: float = _default("write_batch_ms")

    def __post_init__(self) -> None:
        check_fields(self, GATEWAY)
        if self.write_batch_ms and self.driver != "async":
            raise ValueError("--write-batch-ms needs --driver async (the thread driver sends what the real "
                             "gateway sends, one statement per session)")


@dataclass(frozen=True)
class GatewayConfig:
    """Everything one gateway process needs."""

    store: StoreConfig
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    host: str = _default("host")
    port: int = _default("port")
    sse_keepalive: float = _default("sse_keepalive")
    db_latency_ms: float | None = _default("db_latency_ms")
    db_jitter_ms: float | None = _default("db_jitter_ms")
    cycle_log: str | None = _default("cycle_log")
    session_log: str | None = _default("session_log")
    cycle_history: int = _default("cycle_history")
    max_body_bytes: int = _default("max_body_bytes")
    admin_enabled: bool = _default("admin_enabled")
    auth_token: str | None = _default("auth_token")
    worker_id: str = _default("worker_id")
    malloc_mmap_threshold: int = _default("malloc_mmap_threshold")
    gc_threshold: int = _default("gc_threshold")
    loop: str = _default("loop")
    registry_name: str = _default("registry_name")
    #: the event loop's default executor size (``--executor-threads`` given); None leaves Python's default
    loop_executor_threads: int | None = _default("loop_executor_threads")

    def __post_init__(self) -> None:
        check_fields(self, GATEWAY)

    def reported(self) -> dict[str, Any]:
        """The knobs ``/admin/cycles`` reports as ``config`` (the reported rows of the table)."""
        values = {**vars(self.store), **vars(self.registry), **vars(self)}
        return {row.name: values[row.name] for row in GATEWAY_SETTINGS if row.reported}


def _part(part: str) -> list[Any]:
    return [row for row in GATEWAY_SETTINGS if row.part == part]


def store_config(values: Any, **overrides: Any) -> StoreConfig:
    """A :class:`StoreConfig` from a namespace (or object) carrying the store rows; raises ``ValueError``."""
    return StoreConfig(**values_from(values, _part("store"), **overrides))


def registry_config(values: Any, **overrides: Any) -> RegistryConfig:
    """A :class:`RegistryConfig` from a namespace carrying the registry rows; raises ``ValueError``."""
    return RegistryConfig(**values_from(values, _part("registry"), **overrides))


def gateway_config(values: Any, **overrides: Any) -> GatewayConfig:
    """The one place gateway arguments become a :class:`GatewayConfig`; raises ``ValueError`` naming a flag."""
    store_overrides = {k: overrides.pop(k) for k in list(overrides) if GATEWAY.get(k) and GATEWAY[k].part == "store"}
    registry_overrides = {k: overrides.pop(k) for k in list(overrides)
                          if GATEWAY.get(k) and GATEWAY[k].part == "registry"}
    worker_id = overrides.get("worker_id", getattr(values, "worker_id", GATEWAY["worker_id"].default))
    store_overrides.setdefault("application_name", f"{APPLICATION_PREFIX}:{worker_id}")
    return GatewayConfig(store=store_config(values, **store_overrides),
                         registry=registry_config(values, **registry_overrides),
                         **values_from(values, _part("gateway"), **overrides))


def gateway_cli_config(args: Any) -> GatewayConfig:
    """:func:`gateway_config` for the gateway's own command line, where the sim-only knobs and
    ``--executor-threads`` default to None (not given): refused for contextforge, else filled in; an
    ``--executor-threads`` given also sizes the loop's default executor."""
    refuse_sim_only(args)
    values = fill_registry_knobs(dict(vars(args)))
    values["loop_executor_threads"] = values.get("executor_threads")
    if values.get("executor_threads") is None:
        values["executor_threads"] = default_executor_threads()
    return gateway_config(values)
