"""The ``--fault`` specs: their grammar, parsing, and whether a run can carry them out (pure).

Specs (T, D and DOWN are seconds after the load starts: ``5``, ``5s``, ``1m``):

- ``kill-backends@T``: ``pg_terminate_backend`` on every gateway connection (application_name
  ``mcp-gateway-sim…``); the pools meet dead connections at their next use.
- ``restart-db@T[:DOWN]``: stop Postgres at T (``pg_ctl stop -m fast``), start it again DOWN s later
  (default 3) on the same port (``--db docker``: docker stop/start of the same container). Only a server the
  harness started: ``harness run`` does it in-process, a running ``harness up`` does it when asked through its
  control directory (see :class:`RestartControl`).
- ``error-rate=P[@T:D]``: a fraction P of refresh statements raise inside Postgres (the knobs table read by
  the refresh trigger); without ``@T:D`` for the whole load.
- ``statement-timeout=MS[@T:D]``: a refresh whose injected delay reaches MS sleeps MS and is then cancelled
  with SQLSTATE 57014 (query_canceled), as ``statement_timeout`` would; a knob read by the refresh trigger,
  so it applies live, to refreshes only, with no reconnect.
- ``pool-exhaust@T:D``: every gateway checks all its pooled connections out and holds them idle for D s
  (``POST /admin/hold-connections``), so cleanup waits for the pool and, past ``--pool-timeout``, times out.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from harness.errors import UsageError
from harness.settings import parse_seconds

KINDS = ("kill-backends", "restart-db", "error-rate", "statement-timeout", "pool-exhaust")
DEFAULT_DOWN_SECONDS = 3.0


@dataclass(frozen=True)
class FaultSpec:
    """One parsed fault: what, when (``at`` s after the load starts) and for how long (``duration``).

    ``duration`` is 0 for an instant fault (kill-backends) and None for "until the load ends".
    """

    text: str
    kind: str
    at: float = 0.0
    duration: float | None = 0.0
    value: float | None = None

    @property
    def end(self) -> float | None:
        """Seconds after the load starts when the fault clears (None: when the load ends)."""
        return None if self.duration is None else self.at + self.duration


def _seconds(raw: str, what: str, *, positive: bool) -> float:
    try:
        float(raw.strip().lower().rstrip("smh") or "x")
    except ValueError:
        raise ValueError(f"{what} {raw!r} is not a time like 5, 5s or 1m") from None
    try:
        return parse_seconds(raw, allow_zero=not positive)
    except ValueError:
        raise ValueError(f"{what} {raw!r} must be {'> 0' if positive else '>= 0'}") from None


def _window(raw: str, *, down_default: float | None = None) -> tuple[float, float]:
    at_text, colon, length = raw.partition(":")
    at = _seconds(at_text, "time", positive=False)
    if not colon:
        if down_default is None:
            raise ValueError("needs a window T:D (start and duration)")
        return at, down_default
    return at, _seconds(length, "duration", positive=True)


def parse_fault(spec: str) -> FaultSpec:
    """Parse one spec; ``ValueError`` naming the spec when it is malformed."""
    text_ = spec.strip()
    try:
        head, at_sign, when = text_.partition("@")
        kind, eq, raw_value = head.partition("=")
        if kind not in KINDS:
            raise ValueError(f"unknown fault {kind!r} (one of {', '.join(KINDS)})")
        if kind in ("error-rate", "statement-timeout"):
            if not eq:
                raise ValueError(f"needs a value: {kind}={'P' if kind == 'error-rate' else 'MS'}[@T:D]")
            try:
                value = float(raw_value)
            except ValueError:
                raise ValueError(f"value {raw_value!r} is not a number") from None
            if kind == "error-rate" and not 0 <= value <= 1:
                raise ValueError(f"error rate {raw_value} must be between 0 and 1")
            if kind == "statement-timeout" and not 0 < value < float("inf"):
                raise ValueError(f"statement timeout {raw_value} must be > 0 ms")
            if not at_sign:
                return FaultSpec(text_, kind, 0.0, None, value)
            at, duration = _window(when)
            return FaultSpec(text_, kind, at, duration, value)
        if eq:
            raise ValueError(f"{kind} takes no value")
        if not at_sign:
            raise ValueError(f"needs a time: {kind}@T")
        if kind == "kill-backends":
            return FaultSpec(text_, kind, _seconds(when, "time", positive=False), 0.0)
        if kind == "restart-db":
            at, down = _window(when, down_default=DEFAULT_DOWN_SECONDS)
            return FaultSpec(text_, kind, at, down)
        at, duration = _window(when)
        return FaultSpec(text_, kind, at, duration)
    except ValueError as exc:
        raise ValueError(f"bad fault spec {spec!r}: {exc}") from None


def fault_spec(spec: str) -> FaultSpec:
    """``argparse`` type for ``--fault``: a one-line error naming the spec."""
    try:
        return parse_fault(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def check_fits(specs: list[FaultSpec], run_time: float, restart_supported: bool, db_name: str) -> None:
    """Reject faults the run cannot carry out: past the load's end, or a restart the provider cannot do."""
    for spec in specs:
        end = spec.end if spec.end is not None else spec.at
        if end >= run_time:
            raise UsageError(f"fault {spec.text!r} ends at {end:g} s, after the load ({run_time:g} s)")
        if spec.kind == "restart-db" and not restart_supported:
            raise UsageError(f"fault {spec.text!r} needs a Postgres the harness starts, --db embedded or docker "
                             f"(this stack uses {db_name})")
