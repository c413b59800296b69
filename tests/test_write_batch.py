"""Grouped session writes (``--write-batch-ms``): the batcher's logic, then the async store on Postgres."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from gateway_sim import store as st
from gateway_sim.config import StoreConfig
from gateway_sim.write_batch import WriteBatcher


async def test_items_within_the_window_are_written_together_each_with_its_result() -> None:
    calls: list[list[int]] = []

    async def flush(items: list[int]) -> list[int]:
        calls.append(items)
        return [item * 10 for item in items]

    batcher = WriteBatcher(flush, window=0.05)
    assert await asyncio.gather(*(batcher.submit(n) for n in range(5))) == [0, 10, 20, 30, 40]
    assert await batcher.submit(7) == 70  # a later item opens a batch of its own
    assert calls == [[0, 1, 2, 3, 4], [7]]
    assert (batcher.batches, batcher.items) == (2, 6)


async def test_a_full_batch_is_written_at_once_and_an_error_reaches_every_item_of_its_batch() -> None:
    async def flush(items: list[int]) -> list[int]:
        if 13 in items:
            raise RuntimeError("the database refused")
        return items

    batcher = WriteBatcher(flush, window=60.0, max_items=3)  # a window no test waits for: the size decides
    async with asyncio.timeout(5):
        assert await asyncio.gather(*(batcher.submit(n) for n in (1, 2, 3))) == [1, 2, 3]
        results = await asyncio.gather(*(batcher.submit(n) for n in (11, 12, 13)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    pending = asyncio.ensure_future(batcher.submit(4))
    await asyncio.sleep(0)
    await batcher.close()  # close writes the open batch without waiting for its window
    assert pending.result() == 4


def test_bad_windows_are_refused() -> None:
    async def flush(items: list[int]) -> list[int]:
        return items

    for window, size in ((0.0, 10), (-1.0, 10), (0.01, 0)):
        with pytest.raises(ValueError):
            WriteBatcher(flush, window=window, max_items=size)


async def test_the_async_store_writes_a_window_of_opens_and_closes_as_one_statement_each(db_url: str) -> None:
    store = st.open_store(StoreConfig(db_url=db_url, driver="async", pool_size=3, write_batch_ms=50))
    try:
        await store.run(st.create_schema)
        ids = [f"{n:032x}" for n in range(40)]
        await asyncio.gather(*(store.add(sid, "d" if n % 2 else None) for n, sid in enumerate(ids)))
        assert await store.run(st.all_session_ids) == set(ids)
        assert (store._adds.batches, store._adds.items) == (1, 40)
        gone = [*ids[:10], "f" * 32]  # the last one has no row
        assert await asyncio.gather(*(store.remove(sid) for sid in gone)) == [True] * 10 + [False]
        assert store._removes.batches == 1
        assert await store.run(st.all_session_ids) == set(ids[10:])
        assert await store.refresh(ids[11])  # the rows are whole: the refresh finds them
    finally:
        await store.close()


def test_the_thread_driver_refuses_write_batching(db_url: str) -> None:
    with pytest.raises(ValueError, match="--write-batch-ms needs --driver async"):
        StoreConfig(db_url=db_url, driver="thread", write_batch_ms=5)
    proc = subprocess.run(
        [sys.executable, "-m", "gateway_sim", "--db-url", db_url, "--driver", "thread", "--write-batch-ms", "5"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0
    assert "--write-batch-ms needs --driver async" in proc.stderr
    assert "Traceback" not in proc.stderr


async def test_a_gateway_with_grouped_writes_opens_answers_and_ends_sessions(start_gateway, db_url: str) -> None:
    import aiohttp

    from tests.test_mcp_protocol import mcp_post, open_sse, rpc, sse_call

    gw = start_gateway("--driver", "async", "--write-batch-ms", "20")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:

        async def one_sse() -> str:
            async with open_sse(http, gw.url) as session:
                assert (await sse_call(http, session, rpc("ping", 1)))["result"] == {}
                return session.session_id

        sse_ids = await asyncio.gather(*(one_sse() for _ in range(10)))
        status, headers, _ = await mcp_post(http, gw.url, rpc("initialize", 1))
        assert status == 200
        sid = headers["Mcp-Session-Id"]
        async with http.delete(f"{gw.url}/mcp", headers={"Mcp-Session-Id": sid}) as resp:
            assert resp.status == 200
    store = st.open_store(StoreConfig(db_url=db_url, driver="async", pool_size=1))
    try:
        rows = await store.run(st.all_session_ids)
    finally:
        await store.close()
    assert sid not in rows  # its DELETE went through the grouped delete
    assert len(set(sse_ids)) == 10 and set(sse_ids) <= rows  # inserted together; the cleanup cycle removes them later


async def test_a_cleanup_cycles_removals_do_not_wait_for_the_window(db_url: str) -> None:
    """Phase 1 removes gone sessions one after another: under per-session removal none waits a write window."""
    from gateway_sim.config import RegistryConfig
    from gateway_sim.registry import SessionRegistry
    from gateway_sim.transports import SyntheticTransport

    store = st.open_store(StoreConfig(db_url=db_url, driver="async", pool_size=3, write_batch_ms=2000))
    registry = SessionRegistry(store, RegistryConfig(phase1_removal="per-session"))
    try:
        await store.run(st.create_schema)
        transports = [SyntheticTransport(connected=False) for _ in range(5)]
        ids = await registry.add_sessions(transports)
        started = asyncio.get_running_loop().time()
        connected, checked, removed = await registry.phase1()
        elapsed = asyncio.get_running_loop().time() - started
        assert (connected, checked, removed) == ([], 5, 5)
        assert elapsed < 2.0  # five windows would be 10 s; one alone 2 s
        assert not set(ids) & await store.run(st.all_session_ids)
        assert store._removes.batches == 0
    finally:
        await store.close()
