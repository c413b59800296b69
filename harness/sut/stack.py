"""The system under test as one unit: Postgres (+ optional latency proxy) and N gateway processes."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from gateway_sim import store as st
from gateway_sim.settings import gateway_argv
from harness.errors import UsageError
from harness.sut.dbsync import sync_session
from harness.sut.gateway_proc import GatewayProcess
from harness.sut.postgres import PostgresProvider, provider_for


@dataclass(frozen=True)
class StackOptions:
    """What to start."""

    db: str = "embedded"
    db_url: str | None = None
    max_connections: int = 100
    docker_image: str | None = None
    gateway_args: tuple[str, ...] = ()
    gateway_workers: int = 1
    host: str = "127.0.0.1"
    port: int = 0
    latency_mode: str = "server"
    db_latency_ms: float = 0.0
    db_jitter_ms: float = 0.0
    log_dir: Path | None = None
    session_log_dir: Path | None = None
    registry: str = "sim"
    python: str | None = None  # the gateways' interpreter (the contextforge environment's), else ours

    @classmethod
    def from_knobs(cls, knobs: Mapping[str, Any], **overrides: Any) -> StackOptions:
        """From a run's (or ``up``'s) knobs, by their table names; the gateway argv from the forwarded rows."""
        values: dict[str, Any] = {
            "db": knobs.get("db", "embedded"),
            "db_url": knobs.get("db_url"),
            "max_connections": knobs.get("max_connections", 100),
            "docker_image": knobs.get("docker_image"),
            "gateway_args": tuple(gateway_argv(knobs)),
            "gateway_workers": knobs.get("gateway_workers", 1),
            "host": knobs.get("host") or "127.0.0.1",
            "port": knobs.get("port") or 0,
            "latency_mode": knobs.get("latency_mode", "server"),
            "db_latency_ms": knobs.get("db_latency_ms") or 0.0,
            "db_jitter_ms": knobs.get("db_jitter_ms") or 0.0,
            "log_dir": knobs.get("log_dir"),
            "registry": knobs.get("registry_name") or "sim",
        }
        if values["registry"] == "contextforge":
            from harness.commands.options import gateway_python

            values["python"] = gateway_python(knobs)
        values.update(overrides)
        return cls(**values)


class Stack:
    """Starts and stops Postgres, the latency proxy and the gateway workers, in order."""

    def __init__(self, options: StackOptions) -> None:
        if options.gateway_workers < 1:
            raise UsageError("--gateway-workers must be >= 1")
        if options.db_latency_ms < 0 or options.db_jitter_ms < 0:
            raise UsageError("--db-latency-ms and --db-jitter-ms must be >= 0")
        self.options = options
        self.provider: PostgresProvider = provider_for(options.db, options.db_url, options.max_connections,
                                                     options.docker_image)
        self.db_url = ""
        self.gateway_db_url = ""
        self.proxy: Any = None
        self.gateways: list[GatewayProcess] = []

    @property
    def gateway_urls(self) -> list[str]:
        return [g.url for g in self.gateways if g.url]

    @property
    def proxy_control_url(self) -> str | None:
        return self.proxy.control_url if self.proxy is not None else None

    def start(self) -> None:
        """Start everything; on failure, stop what was started and re-raise."""
        try:
            self.db_url = self.provider.start()
            self.gateway_db_url = self.db_url
            with sync_session(self.db_url) as session:
                if self.options.registry == "sim":
                    st.create_schema(session)
                else:  # that registry creates mcp_sessions from its own model; its gateway adds the trigger
                    st.create_fault_knobs(session)
            if self.options.latency_mode == "proxy":
                self._start_proxy()
            self.set_latency(self.options.db_latency_ms, self.options.db_jitter_ms)
            for index in range(self.options.gateway_workers):
                self._start_gateway(index)
        except BaseException:
            self.stop()
            raise

    def _start_proxy(self) -> None:
        from harness.sut.latency_proxy import LatencyProxy

        url = make_url(self.db_url)
        if not url.host or url.host.startswith("/"):
            raise UsageError("--latency-mode proxy needs a database reachable over TCP")
        self.proxy = LatencyProxy(url.host, url.port or 5432, control_port=0)
        host, port = self.proxy.start()
        self.gateway_db_url = url.set(host=host, port=port).render_as_string(hide_password=False)

    def _start_gateway(self, index: int) -> None:
        port = self.options.port + index if self.options.port else 0
        log_path = None
        if self.options.log_dir is not None:
            log_path = Path(self.options.log_dir) / f"gateway-{index}.log"
        args = list(self.options.gateway_args)
        if self.options.session_log_dir is not None:
            args += ["--session-log", str(Path(self.options.session_log_dir) / f"gateway-sessions-{index}.jsonl")]
        gateway = GatewayProcess(self.gateway_db_url, args, worker_id=str(index), python=self.options.python,
                                 host=self.options.host, port=port, log_path=log_path)
        self.gateways.append(gateway)
        gateway.start()

    def set_latency(self, latency_ms: float | None, jitter_ms: float | None = None) -> dict[str, float]:
        """Change the injected latency live, where the latency mode puts it."""
        if self.proxy is not None:
            self.proxy.set_latency(latency_ms if latency_ms is not None else self.proxy.latency_ms, jitter_ms)
            return {"latency_ms": self.proxy.latency_ms, "jitter_ms": self.proxy.jitter_ms}
        with sync_session(self.db_url) as session:
            return st.set_fault_knobs(session, latency_ms, jitter_ms, None)

    def dead_gateways(self) -> list[str]:
        """Worker ids of gateways that exited on their own."""
        return [g.worker_id for g in self.gateways if g.proc is not None and not g.alive()]

    def state(self) -> dict[str, Any]:
        """What ``harness latency`` needs to find this stack."""
        return {
            "pid": os.getpid(),
            "gateway_urls": self.gateway_urls,
            "db_url": self.db_url,
            "latency_mode": self.options.latency_mode,
            "proxy_control_url": self.proxy_control_url,
        }

    def stop(self) -> None:
        """Stop gateways (gracefully), then the proxy, then Postgres; safe to call twice."""
        for gateway in self.gateways:
            with contextlib.suppress(Exception):
                gateway.stop()
        if self.proxy is not None:
            with contextlib.suppress(Exception):
                self.proxy.stop()
            self.proxy = None
        self.provider.stop()


class ExternalGateways:
    """Gateways (and optionally their database) the harness did not start: observed, never stopped."""

    def __init__(self, gateway_urls: list[str], db_url: str | None) -> None:
        if not gateway_urls:
            raise UsageError("--gateway-url needs at least one URL")
        for url in gateway_urls:
            if not url.startswith(("http://", "https://")):
                raise UsageError(f"--gateway-url must be an http(s):// URL, got {url!r}")
        self.gateway_urls = [u.rstrip("/") for u in gateway_urls]
        self.db_url = db_url or ""
        self.gateway_db_url = self.db_url
        self.gateways: list[GatewayProcess] = []

    def start(self) -> None:
        """Nothing to start."""

    def dead_gateways(self) -> list[str]:
        return []

    def stop(self) -> None:
        """Nothing to stop: someone else runs these."""

