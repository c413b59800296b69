"""Group writes: the single-row writes that arrive within a short window go to the database as one statement."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class WriteBatcher(Generic[Item, Result]):
    """Gather the items submitted within ``window`` seconds of the first one (or ``max_items`` of them) and write
    them with one call of ``flush``, which returns one result per item, in order.

    Each :meth:`submit` waits for its batch and gets its own result, or the batch's error. A submitter that
    is cancelled leaves its item in the batch: the write still happens.
    """

    def __init__(
        self, flush: Callable[[list[Item]], Awaitable[Sequence[Result]]], window: float, max_items: int = 1000
    ) -> None:
        if window <= 0 or max_items < 1:
            raise ValueError("a write batch needs a window above 0 and room for at least one item")
        self._flush = flush
        self._window = window
        self._max_items = max_items
        self._items: list[Item] = []
        self._waiters: list[asyncio.Future[Result]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._writing: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.items = 0

    async def submit(self, item: Item) -> Result:
        """Add ``item`` to the open batch and wait for that batch's write."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Result] = loop.create_future()
        self._items.append(item)
        self._waiters.append(waiter)
        if len(self._items) >= self._max_items:
            self._write_now()
        elif self._timer is None:
            self._timer = loop.call_later(self._window, self._write_now)
        return await waiter

    def _write_now(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._items:
            return
        items, waiters = self._items, self._waiters
        self._items, self._waiters = [], []
        self.batches += 1
        self.items += len(items)
        task = asyncio.get_running_loop().create_task(self._write(items, waiters), name="write-batch")
        self._writing.add(task)
        task.add_done_callback(self._writing.discard)

    async def _write(self, items: list[Item], waiters: list[asyncio.Future[Result]]) -> None:
        try:
            results = await self._flush(items)
        except Exception as exc:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        except BaseException:  # cancelled (the gateway is stopping): so are the writes that waited
            for waiter in waiters:
                waiter.cancel()
            raise
        for waiter, result in zip(waiters, results, strict=True):
            if not waiter.done():
                waiter.set_result(result)

    async def close(self) -> None:
        """Write the open batch now and wait for every batch in flight."""
        self._write_now()
        while self._writing:
            await asyncio.gather(*self._writing, return_exceptions=True)
