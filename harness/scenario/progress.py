"""The live display of a run (rich): elapsed time, users, open sessions, the last cycle, pool use."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table


def status_line(elapsed: float, run_time: float, users: int | None, latest: dict[str, Any]) -> dict[str, str]:
    """The figures shown, as text (pure, so a plain log line can use them too)."""
    cycle = latest.get("last_cycle")
    pg = latest.get("pg") or {}
    return {
        "elapsed": f"{elapsed:5.0f} / {run_time:.0f} s",
        "users": "-" if users is None else str(users),
        "open sessions": str(latest.get("sessions", 0)),
        "cycles": str(latest.get("cycles", 0)),
        "last cycle": "-" if cycle is None else f"{cycle['total_ms']:.1f} ms ({cycle['checked']} checked)",
        "pool": f"{latest.get('checked_out', 0)} / {latest.get('limit', 0)} checked out, "
                f"{latest.get('waiters', 0)} waiting",
        "pg connections": str(pg.get("total", "-")),
    }


class Progress:
    """A ``rich.live.Live`` table, or a plain line every 10 s when not a terminal or disabled."""

    def __init__(self, enabled: bool, run_time: float) -> None:
        self.console = Console(stderr=True)
        self.enabled = enabled and self.console.is_terminal
        self.run_time = run_time
        self._live: Live | None = None
        self._last_plain = -10.0

    def __enter__(self) -> Progress:
        if self.enabled:
            self._live = Live(Table(), console=self.console, refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def update(self, elapsed: float, users: int | None, latest: dict[str, Any]) -> None:
        fields = status_line(elapsed, self.run_time, users, latest)
        if self._live is not None:
            table = Table(show_header=False, box=None)
            for key, value in fields.items():
                table.add_row(f"[bold]{key}[/]", value)
            self._live.update(table)
        elif elapsed - self._last_plain >= 10:
            self._last_plain = elapsed
            self.console.print(" | ".join(f"{k}: {v}" for k, v in fields.items()), highlight=False)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)
