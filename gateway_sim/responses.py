"""JSON error responses and request-value checks shared by the gateway's routes."""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from gateway_sim import mcp


def json_error(status: int, message: str, code: int | None = None, request_id: Any = None) -> web.Response:
    """An HTTP error whose body is a JSON-RPC error object."""
    body = mcp.error_response(request_id, code if code is not None else -32000, message)
    return web.json_response(body, status=status)


class HttpJsonRpc(Exception):
    """A JSON-RPC error answered with an HTTP status."""

    def __init__(self, status: int, error: mcp.JsonRpcError) -> None:
        super().__init__(error.message)
        self.status = status
        self.error = error

    def response(self) -> web.Response:
        return web.json_response(self.error.response(), status=self.status)


def int_query(request: web.Request, name: str, default: int) -> int:
    """An integer query parameter; a 400 JSON-RPC error when it is not one."""
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise HttpJsonRpc(400, mcp.JsonRpcError(mcp.INVALID_PARAMS, f"{name} must be an integer")) from None


def finite_number(value: Any) -> float | None:
    """``value`` as a finite float; None for anything else (bools, strings, NaN, ±Infinity, 1e999)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond the float range
        return None
    return number if math.isfinite(number) else None
