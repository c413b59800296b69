"""Read a TOML file the user named; any problem is one clear UsageError."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from harness.errors import UsageError


def read_toml(path: Path, kind: str = "file") -> dict[str, Any]:
    """The parsed ``path``; ``kind`` names it in the error (``plan file``, ``thresholds file``)."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such {kind}") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}") from None
