"""Python's cyclic garbage collector under a load: the start-up heap frozen, the young generation collected
less often.

With Python's own settings (a young collection every 700 net allocations) a gateway under churn spends about
7 % of its CPU in the collector, and each full collection walks every object it ever imported (SQLAlchemy,
aiohttp, asyncpg): about 0.16 s on a 2-core runner, a pause that lands inside whatever request or cleanup cycle
is running. Frozen after start-up, those objects are left out of every later collection; the young generation
is collected every ``threshold`` net allocations, so most short-lived objects are freed by their reference
counts before a collection sees them.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

DEFAULT_GC_THRESHOLD = 20_000
"""Net allocations between young collections (Python's own is 700)."""


def tune_gc(threshold: int) -> bool:
    """Collect once, freeze what survives, then collect the young generation every ``threshold`` net
    allocations (the older generations keep Python's ratios). ``0`` leaves Python's settings; returns whether
    anything changed."""
    if threshold < 0:
        raise ValueError(f"gc_threshold must be 0 (Python's own settings) or more, got {threshold}")
    if threshold == 0:
        return False
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(threshold, middle, old)
    return True


@contextmanager
def tuned_gc(threshold: int = DEFAULT_GC_THRESHOLD) -> Iterator[None]:
    """:func:`tune_gc` for a block (the bench's in-process cycles run as the gateway's do): Python's threshold is
    restored and the frozen objects unfrozen after it."""
    before = gc.get_threshold()
    changed = tune_gc(threshold)
    try:
        yield
    finally:
        if changed:
            gc.set_threshold(*before)
            gc.unfreeze()


def gc_stats() -> dict[str, int]:
    """The collector's young threshold, the objects frozen out of it, and the collections so far."""
    return {
        "gc_threshold": gc.get_threshold()[0],
        "gc_frozen_objects": gc.get_freeze_count(),
        "gc_collections": sum(generation["collections"] for generation in gc.get_stats()),
    }
