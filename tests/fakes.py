"""In-memory stand-ins for fast unit tests of the registry's pure logic (beside the real-Postgres tests)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.pool import NullPool

from gateway_sim.config import StoreConfig
from gateway_sim.pool_monitor import PoolMonitor
from gateway_sim.store import delete_session, insert_session


class FakeStore:
    """A store whose rows live in a set; refreshes sleep ``delay`` and may raise for chosen ids."""

    def __init__(self, delay: float = 0.001, failing: set[str] | None = None) -> None:
        self.config = StoreConfig(db_url="postgresql://fake/db")
        self.monitor = PoolMonitor(NullPool(lambda: None), 5, 0)
        self.rows: set[str] = set()
        self.delay = delay
        self.failing = failing or set()
        self.inflight = 0
        self.inflight_peak = 0
        self.refresh_calls = 0
        self.chunks: list[int] = []
        self.statements: list[tuple[str, int]] = []  # row deletes: (statement, ids)
        self.fail_deletes = False

    @property
    def executor_threads(self) -> int | None:
        return None

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        name = fn.__name__
        if name == "insert_session":
            self.rows.add(args[0])
        elif name == "insert_sessions":
            self.rows.update(args[0])
        elif name in ("delete_session",):
            self.statements.append((name, 1))
            self.rows.discard(args[0])
        elif name == "delete_sessions":
            self.rows.difference_update(args[0])
        elif name == "delete_gone_sessions":
            self.statements.append((name, len(args[0])))
            if self.fail_deletes:
                raise ConnectionError("database unavailable")
            found = [i for i in args[0] if i in self.rows]
            self.rows.difference_update(args[0])
            return found
        elif name == "expire_sessions":
            return []
        else:
            raise AssertionError(f"unexpected statement {name}")
        return None

    async def add(self, session_id: str, data: str | None = None) -> None:
        await self.run(insert_session, session_id, data)

    async def remove(self, session_id: str, *, grouped: bool = True) -> bool:
        return await self.run(delete_session, session_id)

    async def refresh(self, session_id: str) -> bool:
        self.refresh_calls += 1
        self.inflight += 1
        self.inflight_peak = max(self.inflight_peak, self.inflight)
        try:
            await asyncio.sleep(self.delay)
            if session_id in self.failing:
                raise ConnectionError("transient database error")
            return session_id in self.rows
        finally:
            self.inflight -= 1

    async def refresh_many(self, session_ids: Sequence[str]) -> set[str]:
        self.chunks.append(len(session_ids))
        await asyncio.sleep(self.delay)
        if self.failing & set(session_ids):
            raise ConnectionError("transient database error")
        return {i for i in session_ids if i in self.rows}

    async def close(self) -> None:
        self.monitor.detach()


class FakeContainer:
    """A docker-py container with labels that records its removal."""

    def __init__(self, short_id: str, labels: dict[str, str], owner: FakeContainers | None = None) -> None:
        self.short_id = short_id
        self.labels = labels
        self.owner = owner

    def remove(self, force: bool = False, v: bool = False) -> None:
        assert self.owner is not None
        self.owner.items.remove(self)


class FakeContainers:
    """``client.containers``: ``list(all=True, filters={"label": "K=V"})`` over the items."""

    def __init__(self, items: list[FakeContainer]) -> None:
        self.items = items
        for item in items:
            item.owner = self

    def list(self, all: bool = False, filters: dict[str, str] | None = None) -> list[FakeContainer]:
        key, _, value = (filters or {}).get("label", "").partition("=")
        return [c for c in self.items if not key or c.labels.get(key) == value]


class FakeDockerClient:
    """Just enough of ``docker.DockerClient`` for the label bookkeeping."""

    def __init__(self, containers: list[FakeContainer]) -> None:
        self.containers = FakeContainers(containers)
