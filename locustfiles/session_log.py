"""Client-side record of ended sessions: one JSON line per session, appended atomically.

Each line is written with a single ``write`` on a file opened with ``O_APPEND``, so lines from many users
and from several Locust processes never interleave.
"""

from __future__ import annotations

import json
import os
import time
from typing import Literal

Transport = Literal["sse", "streamable_http"]
How = Literal["clean", "abrupt", "abandoned"]


class SessionLog:
    """Appends ``{"session_id", "transport", "how", "closed_at"}`` lines to ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def record(self, session_id: str, transport: Transport, how: How, closed_at: float | None = None) -> None:
        """Append one line for a session the client has just left."""
        line = json.dumps(
            {
                "session_id": session_id,
                "transport": transport,
                "how": how,
                "closed_at": time.time() if closed_at is None else closed_at,
            },
            separators=(",", ":"),
        )
        os.write(self._fd, (line + "\n").encode())

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
