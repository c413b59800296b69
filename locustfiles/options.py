"""The locustfile's own command-line options and their validated form (:class:`LoadSettings`).

Options stay strings or floats in Locust's ``parsed_options`` because the web UI's start form converts a
changed value with the type of the current one; :meth:`LoadSettings.from_options` parses and checks them.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class LoadSettings:
    """What a session user needs to know, validated."""

    lifetime_min: float = 5.0
    lifetime_max: float = 30.0
    abrupt_ratio: float = 0.1
    abandon_ratio: float = 0.1
    transport_mix: float = 0.8
    calls_per_session: int = 3
    gateway_urls: tuple[str, ...] = ()
    auth_token: str | None = None
    session_log: str | None = None

    @classmethod
    def from_options(cls, options: Any, host: str | None = None) -> LoadSettings:
        """Build from Locust's ``parsed_options``; raises ValueError with a one-line reason."""
        lo, hi = parse_lifetime(str(getattr(options, "session_lifetime", "5-30")))
        urls = parse_gateway_urls(str(getattr(options, "gateway_urls", "") or ""))
        if not urls and host:
            urls = parse_gateway_urls(host)
        return cls(
            lifetime_min=lo,
            lifetime_max=hi,
            abrupt_ratio=parse_ratio("abrupt-ratio", getattr(options, "abrupt_ratio", 0.1)),
            abandon_ratio=parse_ratio("abandon-ratio", getattr(options, "abandon_ratio", 0.1)),
            transport_mix=parse_ratio("transport-mix", getattr(options, "transport_mix", 0.8)),
            calls_per_session=parse_calls(getattr(options, "calls_per_session", 3)),
            gateway_urls=urls,
            auth_token=(getattr(options, "auth_token", "") or None),
            session_log=(getattr(options, "session_log", "") or None),
        )

    @property
    def headers(self) -> dict[str, str]:
        """Headers every MCP request carries."""
        return {"Authorization": f"Bearer {self.auth_token}"} if self.auth_token else {}


def parse_lifetime(text: str) -> tuple[float, float]:
    """``"5-30"`` → (5.0, 30.0); ``"10"`` → (10.0, 10.0)."""
    lo_text, sep, hi_text = text.strip().partition("-")
    try:
        lo = float(lo_text)
        hi = float(hi_text) if sep else lo
    except ValueError:
        raise ValueError(f"--session-lifetime must look like 5-30 (seconds), got {text!r}") from None
    if lo <= 0 or hi < lo:
        raise ValueError(f"--session-lifetime needs 0 < MIN <= MAX, got {text!r}")
    return lo, hi


def parse_calls(value: Any) -> int:
    """MCP calls per session after initialize: a whole number from 0 to 100."""
    try:
        calls = int(str(value))
    except ValueError:
        raise ValueError(f"--calls-per-session must be a whole number, got {value!r}") from None
    if not 0 <= calls <= 100:
        raise ValueError(f"--calls-per-session must be between 0 and 100, got {value!r}")
    return calls


def parse_ratio(name: str, value: Any) -> float:
    """A share between 0 and 1."""
    try:
        ratio = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"--{name} must be a number between 0 and 1, got {value!r}") from None
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"--{name} must be between 0 and 1, got {value!r}")
    return ratio


def parse_gateway_urls(text: str) -> tuple[str, ...]:
    """``"http://a:1,http://b:2"`` → base URLs without a trailing slash."""
    urls: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        parts = urlsplit(item)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"--gateway-urls needs http(s)://HOST:PORT URLs, got {item!r}")
        urls.append(item.rstrip("/"))
    return tuple(urls)


def _checked(parse: Any) -> Any:
    """An argparse ``type`` that validates with ``parse`` but keeps the value a string."""

    def check(text: str) -> str:
        try:
            parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    return check


RATIO_OPTIONS: tuple[tuple[str, str, str], ...] = (
    ("abrupt-ratio", "0.1", "share of SSE sessions that end by dropping the socket mid-stream (default 0.1)"),
    ("abandon-ratio", "0.1", "share of Streamable HTTP sessions left without DELETE, for the TTL sweep (default 0.1)"),
    ("transport-mix", "0.8", "share of users on SSE; the rest use Streamable HTTP (default 0.8)"),
)


def add_arguments(parser: Any) -> None:
    """Register the options on Locust's parser; the runtime knobs appear in the web UI's start form."""
    group = parser  # Locust's parser; its argument groups lack include_in_web_ui
    group.add_argument(
        "--session-lifetime",
        type=_checked(parse_lifetime),
        default="5-30",
        include_in_web_ui=True,
        help="seconds a session is held, MIN-MAX drawn uniformly (default 5-30)",
    )
    for name, default, help_text in RATIO_OPTIONS:
        group.add_argument(
            f"--{name}",
            type=_checked(lambda v, name=name: parse_ratio(name, v)),
            default=default,
            include_in_web_ui=True,
            help=help_text,
        )
    group.add_argument(
        "--calls-per-session",
        type=_checked(parse_calls),
        default="3",
        include_in_web_ui=True,
        help="tools/list, tools/call and ping calls each session makes after initialize (default 3)",
    )
    group.add_argument(
        "--gateway-urls",
        type=_checked(parse_gateway_urls),
        default="",
        include_in_web_ui=True,
        help="comma-separated gateway worker URLs; each new session picks the next (default: --host)",
    )
    group.add_argument(
        "--observe-db-url",
        default="",
        is_secret=True,
        help="the gateway's database: show cycles observed there as CLEANUP rows (for a gateway without "
             "/admin/cycles; read-only, see docs/observe.md)",
    )
    group.add_argument(
        "--auth-token",
        default="",
        include_in_web_ui=True,
        is_secret=True,
        help="send 'Authorization: Bearer TOKEN' on MCP requests",
    )
    group.add_argument(
        "--session-log",
        default="",
        include_in_web_ui=False,
        help="append one JSON line per ended session (client side) to this file",
    )
