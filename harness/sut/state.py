"""Where ``harness up`` leaves the addresses of what it started, for ``harness latency`` and friends."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from harness.errors import UsageError


def default_state_path() -> Path:
    """``$MCP_LOADTEST_STATE`` or a file in the temp directory."""
    env = os.environ.get("MCP_LOADTEST_STATE")
    return Path(env) if env else Path(tempfile.gettempdir()) / "mcp-loadtest-up.json"


def write_state(data: dict[str, Any], path: Path | None = None) -> Path:
    """Write the state file atomically."""
    target = path or default_state_path()
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    tmp.replace(target)
    return target


def read_state(path: Path | None = None) -> dict[str, Any]:
    """Read the state of a running ``harness up``; a clear error when there is none."""
    target = path or default_state_path()
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"no running 'harness up' found ({target} is missing); pass --gateway-url or --db-url"
                         ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read {target}: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{target} is not a harness state file")
    return data


def remove_state(path: Path | None = None) -> None:
    """Remove the state file if it is there."""
    (path or default_state_path()).unlink(missing_ok=True)
