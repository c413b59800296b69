"""SIGTERM as Ctrl-C while the harness holds something it started (a database server, a container).

A process killed by SIGTERM's default action runs no ``finally`` block: the Postgres server, its data directory
or its container would be left behind. :class:`TerminateAsInterrupt` hands the first SIGTERM to whatever
handles SIGINT at that moment: inside ``asyncio.run`` that is the runner's handler, which cancels the main task
so the coroutines unwind through their own clean-up and ``asyncio.run`` then raises ``KeyboardInterrupt``;
elsewhere it is Python's default handler, which raises ``KeyboardInterrupt`` at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any


class TerminateAsInterrupt:
    """While installed, SIGTERM is handled as SIGINT; a second SIGTERM (during the clean-up) is ignored.

    Installed only in the main thread and only over the default disposition: commands with their own SIGTERM
    handling (``up``, ``run``) keep it.
    """

    def __init__(self) -> None:
        self._installed = False
        self._fired = False

    def install(self) -> None:
        """Take over SIGTERM if nothing else has; idempotent."""
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, self._handle)
            self._installed = True
            self._fired = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._fired:
            return
        self._fired = True
        on_interrupt: Callable[..., Any] | int | None = signal.getsignal(signal.SIGINT)
        if callable(on_interrupt):
            on_interrupt(signal.SIGINT, frame)
        else:  # SIGINT ignored (a background job of a shell): interrupt anyway
            raise KeyboardInterrupt

    def remove(self) -> None:
        """Give SIGTERM back its default action (if this guard still holds it)."""
        if self._installed and threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGTERM) == self._handle:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
            self._installed = False
