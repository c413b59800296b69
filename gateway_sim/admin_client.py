"""A small synchronous client for the gateway's ``/admin`` API.

Plain ``urllib`` on purpose: the harness's threads, the benchmarks and the tests call it as it is, and on the
Locust side gevent's monkey patching makes the same calls cooperative. Every method returns the decoded JSON
object; an HTTP error raises :class:`AdminError` (an ``OSError``) with the gateway's message, an unreachable gateway
``OSError`` (``urllib.error.URLError`` is one).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode

DEFAULT_TIMEOUT = 10.0


class AdminError(OSError):
    """The gateway answered with an HTTP error status; ``status`` and the body's message are kept."""

    def __init__(self, url: str, status: int, detail: str) -> None:
        super().__init__(f"{url} answered {status}: {detail}")
        self.status = status

    def __str__(self) -> str:
        return str(self.args[0])


class AdminClient:
    """The ``/admin`` routes of one gateway, by name."""

    def __init__(self, base_url: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                timeout: float | None = None) -> dict[str, Any]:
        """One JSON request to ``base_url + path``."""
        url = self.base_url + path
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                return dict(json.load(response))
        except urllib.error.HTTPError as exc:
            raise AdminError(url, exc.code, exc.read().decode(errors="replace").strip()) from None

    def cycles(self, since: int | None = None, limit: int | None = None,
               timeout: float | None = None) -> dict[str, Any]:
        """``GET /admin/cycles``: cycle records after ``since``, pool gauges, accounting, config."""
        query = {k: v for k, v in (("since", since), ("limit", limit)) if v is not None}
        return self.request("GET", "/admin/cycles" + (f"?{urlencode(query)}" if query else ""), timeout=timeout)

    def config(self) -> dict[str, Any]:
        """The knobs the gateway reports (``/admin/cycles``' ``config``)."""
        return dict(self.cycles(limit=0)["config"])

    def accounting(self) -> dict[str, Any]:
        """Sessions created, removed and active (``/admin/cycles``' ``sessions``)."""
        return dict(self.cycles(limit=0)["sessions"])

    def sessions(self, timeout: float | None = None) -> dict[str, Any]:
        """``GET /admin/sessions``: the ids of the live sessions by transport."""
        return self.request("GET", "/admin/sessions", timeout=timeout)

    def live_session_ids(self, timeout: float | None = None) -> set[str]:
        """Every session id the gateway holds as live."""
        return {i for ids in self.sessions(timeout)["sessions"].values() for i in ids}

    def db(self, timeout: float | None = None) -> dict[str, Any]:
        """``GET /admin/db``: ``pg_stat_activity`` of the gateways by state, and ``max_connections``."""
        return self.request("GET", "/admin/db", timeout=timeout)

    def process(self) -> dict[str, Any]:
        """``GET /admin/process``: RSS, malloc figures, open fds, asyncio tasks, pooled connections."""
        return self.request("GET", "/admin/process")

    def latency(self) -> dict[str, Any]:
        """``GET /admin/latency``: the injected latency now."""
        return self.request("GET", "/admin/latency")

    def set_latency(self, latency_ms: float | None = None, jitter_ms: float | None = None,
                    error_rate: float | None = None) -> dict[str, Any]:
        """``POST /admin/latency``: change the injected latency (None leaves a knob as it is)."""
        body = {k: v for k, v in (("latency_ms", latency_ms), ("jitter_ms", jitter_ms),
                                  ("error_rate", error_rate)) if v is not None}
        return self.request("POST", "/admin/latency", body)

    def cleanup(self, timeout: float = 60.0) -> dict[str, Any]:
        """``POST /admin/cleanup``: run one cycle now and return its record."""
        return self.request("POST", "/admin/cleanup", timeout=timeout)

    def hold_connections(self, seconds: float) -> dict[str, Any]:
        """``POST /admin/hold-connections``: hold every pooled connection for ``seconds``."""
        return self.request("POST", "/admin/hold-connections", {"seconds": seconds})

    def calibrate(self, samples: int | None = None, timeout: float = 120.0, *,
                  between_cycles: bool = False) -> dict[str, Any]:
        """``POST /admin/calibrate``: the gateway's CPU per refresh, phase-1 check and removal, measured in it
        (``between_cycles``: right after the next cleanup cycle ends)."""
        body: dict[str, Any] = {} if samples is None else {"samples": samples}
        if between_cycles:
            body["between_cycles"] = True
        return self.request("POST", "/admin/calibrate", body, timeout=timeout)
