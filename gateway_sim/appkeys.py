"""Typed keys of the gateway's application state, shared by the MCP routes and the admin sub-application."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import Any

from aiohttp import web

from gateway_sim.config import GatewayConfig
from gateway_sim.metrics import CycleLog, GatewayMetrics
from gateway_sim.registry_api import Registry
from gateway_sim.store import SessionStore

CONFIG = web.AppKey("config", GatewayConfig)
STORE = web.AppKey("store", SessionStore)
REGISTRY = web.AppKey("registry", Registry)
METRICS = web.AppKey("metrics", GatewayMetrics)
CYCLES = web.AppKey("cycles", CycleLog)
TASKS = web.AppKey("tasks", set)


def spawn(app: Mapping[Any, Any], coro: Awaitable[None]) -> None:
    """Run ``coro`` as a task the app (or a sub-application's ``config_dict``) keeps and cancels on shutdown."""
    task = asyncio.ensure_future(coro)
    app[TASKS].add(task)
    task.add_done_callback(app[TASKS].discard)
