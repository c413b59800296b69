"""Load shapes for the MCP session users (Locust ``LoadTestShape``), scaled by the usual options.

Classes (pick one in the web UI with ``--class-picker``, or headless with ``--load-shape NAME``):

* ``RampHoldDrain`` — ramp to the peak over the first 20 % of the run, hold 60 %, drain to 0 in the last 20 %.
* ``Spike`` — a base of a fifth of the peak, a jump to the peak for the middle 20 % of the run, back to base.
* ``ChurnWave`` — users rise and fall between half the peak and the peak in three waves; every fall stops
  users mid-session, so the gateway sees bursts of closes on top of the steady churn.

The peak is ``-u/--users`` (default 100), the length ``-t/--run-time`` (default 300 s); the shapes set their
own spawn rates, at least ``-r/--spawn-rate``. Example:

    locust -f locustfiles/mcp_sessions.py,locustfiles/shapes.py --class-picker --host http://127.0.0.1:8000
    locust -f locustfiles/mcp_sessions.py,locustfiles/shapes.py --headless --load-shape Spike \\
        -u 500 -t 120s --host http://127.0.0.1:8000
"""

from __future__ import annotations

import math
import sys
from typing import Any

from locust import LoadTestShape, events
from locust.env import Environment

DEFAULT_USERS = 100
DEFAULT_RUN_TIME = 300.0

Tick = tuple[int, float] | None


def ramp_hold_drain(t: float, peak: int, total: float, min_rate: float = 1.0) -> Tick:
    """Users and spawn rate at ``t`` seconds: ramp 20 %, hold 60 %, drain 20 %, then stop."""
    if t >= total:
        return None
    rate = max(min_rate, peak / max(0.2 * total, 1e-9))
    return (0, rate) if t >= 0.8 * total else (peak, rate)


def spike(t: float, peak: int, total: float, min_rate: float = 1.0) -> Tick:
    """A fifth of the peak, the peak from 40 % to 60 % of the run (reached within ~2 s), then the base."""
    if t >= total:
        return None
    base = max(1, peak // 5)
    rate = max(min_rate, peak / 2.0)
    return (peak, rate) if 0.4 * total <= t < 0.6 * total else (base, rate)


def churn_wave(t: float, peak: int, total: float, min_rate: float = 1.0, waves: int = 3) -> Tick:
    """Between half the peak and the peak along a cosine with ``waves`` periods over the run."""
    if t >= total:
        return None
    low = max(1, peak // 2)
    period = total / waves
    users = low + (peak - low) * (1 - math.cos(2 * math.pi * t / period)) / 2
    # Twice the steepest slope, so the runner keeps up with the curve.
    rate = max(min_rate, 2 * math.pi * (peak - low) / period)
    return round(users), rate


class _OptionShape(LoadTestShape):
    """Reads the peak, run time and spawn rate from the common options (also from the web UI form)."""

    abstract = True
    use_common_options = True

    def _params(self) -> tuple[int, float, float]:
        options = self.runner.environment.parsed_options if self.runner else None
        peak = int(getattr(options, "num_users", None) or DEFAULT_USERS)
        total = float(getattr(options, "run_time", None) or DEFAULT_RUN_TIME)
        rate = float(getattr(options, "spawn_rate", None) or 1.0)
        return peak, total, rate


class RampHoldDrain(_OptionShape):
    """Ramp up, hold, drain."""

    def tick(self) -> Tick:
        peak, total, rate = self._params()
        return ramp_hold_drain(self.get_run_time(), peak, total, rate)


class Spike(_OptionShape):
    """Base load with one spike to the peak."""

    def tick(self) -> Tick:
        peak, total, rate = self._params()
        return spike(self.get_run_time(), peak, total, rate)


class ChurnWave(_OptionShape):
    """Waves of arrivals and departures."""

    def tick(self) -> Tick:
        peak, total, rate = self._params()
        return churn_wave(self.get_run_time(), peak, total, rate)


SHAPES = {cls.__name__: cls for cls in (RampHoldDrain, Spike, ChurnWave)}


@events.init_command_line_parser.add_listener
def _on_parser(parser: Any, **_kw: Any) -> None:
    parser.add_argument(
        "--load-shape",
        choices=[*SHAPES, "none"],
        default=None,
        include_in_web_ui=False,
        help="load shape for a headless run (none: plain -u/-r); the web UI uses --class-picker",
    )


@events.init.add_listener
def _on_init(environment: Environment, **_kw: Any) -> None:
    name = getattr(environment.parsed_options, "load_shape", None)
    if not name:
        return
    if name == "none":
        environment.shape_class = None
        return
    shape = (environment.available_shape_classes or {}).get(name)
    if shape is None:
        print(f"locust: error: --load-shape {name}: shape class not loaded", file=sys.stderr)
        sys.exit(2)
    shape.runner = environment.runner
    environment.shape_class = shape
