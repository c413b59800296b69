"""JSON-RPC 2.0 parsing and the MCP methods the gateway serves; errors as JSON-RPC error objects."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602

PROTOCOL_VERSION = "2025-03-26"
SERVER_INFO = {"name": "mcp-gateway-sim", "version": "0.1.0"}
MAX_SLEEP_SECONDS = 10.0

JsonDict = dict[str, Any]


class JsonRpcError(Exception):
    """A JSON-RPC error with its code; ``request_id`` is echoed in the error response."""

    def __init__(self, code: int, message: str, request_id: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id

    def response(self) -> JsonDict:
        return error_response(self.request_id, self.code, self.message)


def error_response(request_id: Any, code: int, message: str) -> JsonDict:
    """A JSON-RPC error object."""
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


@dataclass(frozen=True)
class Request:
    """A validated JSON-RPC request or notification."""

    method: str
    params: JsonDict
    id: Any = None
    is_notification: bool = False


#: A run of digits orjson may not keep exact (it reads an integer beyond 64 bits as a float): such a body is
#: decoded by the standard library, which keeps every integer.
_LONG_NUMBER = re.compile(rb"\d{19}")


def _decode(body: bytes) -> Any:
    if _LONG_NUMBER.search(body) is None:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass  # the standard library decides: it takes NaN, Infinity and lone surrogates, and says what is wrong
    return json.loads(body)


def parse_body(body: bytes) -> Request:
    """Parse and validate one JSON-RPC message; raises :class:`JsonRpcError` on bad input."""
    try:
        message = _decode(body)
    except (ValueError, RecursionError) as exc:  # bad JSON, bad UTF-8, an integer of too many digits
        raise JsonRpcError(PARSE_ERROR, f"Parse error: {exc}") from None
    return validate(message)


def validate(message: Any) -> Request:
    """Check the JSON-RPC 2.0 shape of a decoded message."""
    if isinstance(message, list):
        raise JsonRpcError(INVALID_REQUEST, "Invalid Request: batches are not supported")
    if not isinstance(message, dict):
        raise JsonRpcError(INVALID_REQUEST, "Invalid Request: expected a JSON object")
    request_id = message.get("id")
    if request_id is not None and (isinstance(request_id, bool) or not isinstance(request_id, (str, int))):
        raise JsonRpcError(INVALID_REQUEST, "Invalid Request: id must be a string or an integer")
    if message.get("jsonrpc") != "2.0":
        raise JsonRpcError(INVALID_REQUEST, 'Invalid Request: jsonrpc must be "2.0"', request_id)
    method = message.get("method")
    if not isinstance(method, str) or not method:
        raise JsonRpcError(INVALID_REQUEST, "Invalid Request: method must be a non-empty string", request_id)
    params = message.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise JsonRpcError(INVALID_PARAMS, "Invalid params: params must be an object", request_id)
    return Request(method=method, params=params, id=request_id, is_notification="id" not in message)


# --- tools -------------------------------------------------------------------------------------------
TOOLS: list[JsonDict] = [
    {
        "name": "echo",
        "description": "Return the given text.",
        "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    },
    {
        "name": "sleep",
        "description": f"Wait the given seconds (0 to {MAX_SLEEP_SECONDS:g}) and answer.",
        "inputSchema": {
            "type": "object",
            "properties": {"seconds": {"type": "number", "minimum": 0, "maximum": MAX_SLEEP_SECONDS}},
            "required": ["seconds"],
        },
    },
]


def _text_result(text: str) -> JsonDict:
    return {"content": [{"type": "text", "text": text}], "isError": False}


async def _tool_echo(arguments: JsonDict) -> JsonDict:
    text = arguments.get("text")
    if not isinstance(text, str):
        raise ValueError("echo needs a string argument 'text'")
    return _text_result(text)


async def _tool_sleep(arguments: JsonDict) -> JsonDict:
    seconds = arguments.get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ValueError("sleep needs a number argument 'seconds'")
    if not 0 <= seconds <= MAX_SLEEP_SECONDS:
        raise ValueError(f"sleep 'seconds' must be between 0 and {MAX_SLEEP_SECONDS:g}")
    await asyncio.sleep(seconds)
    return _text_result(f"slept {seconds:g} s")


TOOL_HANDLERS: dict[str, Callable[[JsonDict], Awaitable[JsonDict]]] = {
    "echo": _tool_echo,
    "sleep": _tool_sleep,
}


# --- methods -----------------------------------------------------------------------------------------
async def _initialize(params: JsonDict) -> JsonDict:
    version = params.get("protocolVersion", PROTOCOL_VERSION)
    if not isinstance(version, str):
        raise ValueError("protocolVersion must be a string")
    return {
        "protocolVersion": version,
        "capabilities": {"tools": {"listChanged": False}},
        "serverInfo": SERVER_INFO,
    }


async def _ping(params: JsonDict) -> JsonDict:
    return {}


async def _tools_list(params: JsonDict) -> JsonDict:
    return {"tools": TOOLS}


async def _tools_call(params: JsonDict) -> JsonDict:
    name = params.get("name")
    arguments = params.get("arguments", {})
    if not isinstance(name, str):
        raise ValueError("tools/call needs a string 'name'")
    if not isinstance(arguments, dict):
        raise ValueError("tools/call 'arguments' must be an object")
    handler = TOOL_HANDLERS.get(name)
    if handler is None:
        raise ValueError(f"unknown tool {name!r}")
    return await handler(arguments)


async def _ignore(params: JsonDict) -> JsonDict:
    return {}


METHODS: dict[str, Callable[[JsonDict], Awaitable[JsonDict]]] = {
    "initialize": _initialize,
    "ping": _ping,
    "tools/list": _tools_list,
    "tools/call": _tools_call,
    "notifications/initialized": _ignore,
    "notifications/cancelled": _ignore,
}


async def dispatch(request: Request) -> JsonDict | None:
    """Run a request and return its JSON-RPC response (``None`` for a notification)."""
    handler = METHODS.get(request.method)
    if handler is None:
        if request.is_notification:
            return None
        return error_response(request.id, METHOD_NOT_FOUND, f"Method not found: {request.method}")
    try:
        result = await handler(request.params)
    except ValueError as exc:
        if request.is_notification:
            return None
        return error_response(request.id, INVALID_PARAMS, f"Invalid params: {exc}")
    if request.is_notification:
        return None
    return {"jsonrpc": "2.0", "id": request.id, "result": result}
