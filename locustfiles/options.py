"""The locustfile's own command-line options, from the settings table, and their validated form.

Options stay strings in Locust's ``parsed_options`` because the web UI's start form converts a changed value
with the type of the current one; :meth:`LoadSettings.from_options` converts and checks them with the rows.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from harness.settings import LOCUSTFILE_KNOBS, SETTINGS, gateway_urls, rows, session_lifetime

WEB_UI_HIDDEN = ("client_session_log", "observe_db_url")
"""Options a person never sets in the start form."""


def _value(options: Any, name: str) -> Any:
    """An option converted and checked with its row; the row's default when it is not set."""
    row = SETTINGS[name]
    raw = getattr(options, name, None)
    if raw is None or raw == "":
        return row.default_value()
    try:
        value = row.type(str(raw))
    except (TypeError, ValueError):
        raise ValueError(f"{row.flag} must be a {row.type.__name__}, got {raw!r}") from None
    row.check(value)
    return value


@dataclass(frozen=True)
class LoadSettings:
    """What a session user needs to know, validated."""

    lifetime_min: float = session_lifetime(SETTINGS["session_lifetime"].default)[0]
    lifetime_max: float = session_lifetime(SETTINGS["session_lifetime"].default)[1]
    abrupt_ratio: float = SETTINGS["abrupt_ratio"].default
    abandon_ratio: float = SETTINGS["abandon_ratio"].default
    transport_mix: float = SETTINGS["transport_mix"].default
    calls_per_session: int = SETTINGS["calls_per_session"].default
    gateway_urls: tuple[str, ...] = ()
    auth_token: str | None = None
    session_log: str | None = None

    @classmethod
    def from_options(cls, options: Any, host: str | None = None) -> LoadSettings:
        """Build from Locust's ``parsed_options``; raises ValueError with a one-line reason."""
        lo, hi = session_lifetime(str(_value(options, "session_lifetime")))
        urls = gateway_urls(str(getattr(options, "gateway_urls", "") or ""))
        if not urls and host:
            urls = gateway_urls(host)
        return cls(
            lifetime_min=lo,
            lifetime_max=hi,
            abrupt_ratio=_value(options, "abrupt_ratio"),
            abandon_ratio=_value(options, "abandon_ratio"),
            transport_mix=_value(options, "transport_mix"),
            calls_per_session=_value(options, "calls_per_session"),
            gateway_urls=urls,
            auth_token=(getattr(options, "auth_token", "") or None),
            session_log=(getattr(options, "client_session_log", "") or None),
        )

    @property
    def headers(self) -> dict[str, str]:
        """Headers every MCP request carries."""
        return {"Authorization": f"Bearer {self.auth_token}"} if self.auth_token else {}


def _checked(name: str) -> Any:
    """An argparse ``type`` that validates with the row but keeps the value a string (for the web UI)."""

    def check(text: str) -> str:
        try:
            _value(argparse.Namespace(**{name: text}), name)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    return check


def add_arguments(parser: Any) -> None:
    """Register the options on Locust's parser; the runtime knobs appear in the web UI's start form."""
    for row in rows(LOCUSTFILE_KNOBS):
        default = row.default_value()
        parser.add_argument(
            row.flag,
            dest=row.name,
            type=_checked(row.name),
            default="" if default is None else str(default),
            include_in_web_ui=row.name not in WEB_UI_HIDDEN,
            is_secret=row.name in ("auth_token", "observe_db_url"),
            help=row.help_text(default),
        )
