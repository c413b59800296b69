"""The MCP calls a session user makes, and the check of each JSON-RPC answer (pure, unit-testable)."""

from __future__ import annotations

import itertools
import random
import secrets
from dataclasses import dataclass, field
from typing import Any

PROTOCOL_VERSION = "2025-03-26"
CLIENT_INFO = {"name": "mcp-loadtest-locust", "version": "0.1.0"}

_ids = itertools.count(1)


@dataclass(frozen=True)
class Call:
    """One JSON-RPC request: ``label`` names it in the stats table (``tools/call echo``)."""

    method: str
    params: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    id: int = field(default_factory=lambda: next(_ids))

    @property
    def name(self) -> str:
        return self.label or self.method

    def body(self) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": self.id, "method": self.method, "params": self.params}


def notification(method: str) -> dict[str, Any]:
    """A JSON-RPC notification body (no id, no answer)."""
    return {"jsonrpc": "2.0", "method": method, "params": {}}


def initialize() -> Call:
    return Call(
        "initialize",
        {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO},
    )


def echo() -> Call:
    arguments = {"text": secrets.token_hex(8)}
    return Call("tools/call", {"name": "echo", "arguments": arguments}, "tools/call echo")


def random_calls(rng: random.Random, count: int = 3) -> list[Call]:
    """A few of ``tools/list`` / ``tools/call echo`` / ``ping`` in random order."""
    makers = [lambda: Call("tools/list"), echo, lambda: Call("ping")]
    return [rng.choice(makers)() for _ in range(count)]


def check_answer(call: Call, message: Any) -> str | None:
    """``None`` if ``message`` is the right answer to ``call``, else a short, stable failure reason."""
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        return "answer is not a JSON-RPC 2.0 object"
    if message.get("id") != call.id:
        return "answer carries the wrong id"
    if "error" in message:
        error = message["error"] if isinstance(message["error"], dict) else {}
        return f"JSON-RPC error {error.get('code')}: {error.get('message')}"
    result = message.get("result")
    if not isinstance(result, dict):
        return "answer has no result object"
    if call.method == "initialize" and not isinstance(result.get("protocolVersion"), str):
        return "initialize result lacks protocolVersion"
    if call.method == "tools/list" and not any(
        isinstance(t, dict) and t.get("name") == "echo" for t in result.get("tools", [])
    ):
        return "tools/list result lacks the echo tool"
    if call.label == "tools/call echo":
        content = result.get("content")
        text = content[0].get("text") if isinstance(content, list) and content else None
        if text != call.params["arguments"]["text"]:
            return "echo returned other text"
    return None
