"""One observation end to end: sample until stopped, infer the cycles, write ``harness run``'s files."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.observe.infer import InferenceParams, InferredCycle
from harness.observe.sampler import Observation, Sampler
from harness.observe.writer import build_summary, write_results


@contextmanager
def stop_on_signal(stop: Callable[[], None]) -> Iterator[threading.Event]:
    """Turn Ctrl-C/SIGTERM into ``stop()`` (so what was seen is still written); the event says it happened."""
    happened = threading.Event()

    def handler(*_: object) -> None:
        happened.set()
        stop()

    if threading.current_thread() is not threading.main_thread():
        yield happened
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield happened
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def finish(obs: Observation, out_dir: Path, config: dict[str, Any], warnings: list[str],
           params: InferenceParams | None = None, extra: dict[str, Any] | None = None
           ) -> tuple[dict[str, Any], list[InferredCycle]]:
    """Infer the cycles of ``obs`` and write every result file (``extra`` replaces summary sections, e.g.
    ``locust``); returns the summary and the cycles."""
    cycles = obs.cycles(params)
    if obs.pg_samples and not cycles:
        warnings.append("no cleanup cycle was seen: no refresh wave in mcp_sessions during the observation")
    summary = build_summary(obs, cycles, config, warnings) | dict(extra or {})
    write_results(out_dir, summary, obs, cycles)
    return summary, cycles


def observe(db_url: str, duration: float | None, out_dir: Path, application_name: str | None = None,
            config: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[InferredCycle]]:
    """Watch ``db_url`` for ``duration`` seconds (or until Ctrl-C) and write the results into ``out_dir``."""
    sampler = Sampler(db_url, application_name)
    sampler.open()
    warnings: list[str] = []
    with stop_on_signal(sampler.stop) as interrupted:
        obs = sampler.run(duration)
    if interrupted.is_set():
        warnings.append("interrupted: the observation was stopped early")
    config = {"db": "observed", "duration": duration, "application_name": application_name, **(config or {})}
    return finish(obs, out_dir, config, warnings)
