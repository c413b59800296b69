"""Named events of a run, the way Locust's ``Environment.events`` works: extensions add listeners, the run
fires them. Nothing an extension does reaches into the results; it contributes through :class:`Contributions`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


class EventHook:
    """Listeners called in the order added; ``fire`` passes its keyword arguments to each."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._listeners: list[Callable[..., None]] = []

    def add_listener(self, listener: Callable[..., None]) -> Callable[..., None]:
        """Add ``listener`` (usable as a decorator)."""
        self._listeners.append(listener)
        return listener

    def fire(self, **kwargs: Any) -> None:
        """Call every listener with ``kwargs``."""
        for listener in self._listeners:
            listener(**kwargs)


@dataclass
class Contributions:
    """What extensions add to the results: typed summary sections by key, report sections and warnings."""

    sections: dict[str, Any] = field(default_factory=dict)
    html: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def section(self, key: str, value: Any, html: str | None = None) -> None:
        """Add the summary section ``key`` (a key may be given once) and, optionally, a report section."""
        if key in self.sections:
            raise ValueError(f"summary section {key!r} was contributed twice")
        self.sections[key] = value
        if html:
            self.html.append(html)


class RunEvents:
    """The events of one run.

    - ``load_start(run)``: the stack is up, the collector runs, Locust is about to start;
    - ``load_stop(run)``: the load and the drain are over, or the run is failing (fired once either way);
    - ``results(run, data, summary, contribute)``: the core sections are computed (``summary`` is the
      :class:`~harness.scenario.results.RunSummary` without extension sections); add yours to ``contribute``.
    """

    def __init__(self) -> None:
        self.load_start = EventHook("load_start")
        self.load_stop = EventHook("load_stop")
        self.results = EventHook("results")
