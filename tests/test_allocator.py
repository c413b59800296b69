"""The gateway's C-allocator knob: glibc's moving mmap threshold keeps freed large blocks; pinned, it does not."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import urllib.request

import pytest

from gateway_sim import allocator

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt/mallinfo2 are glibc's")

# Free a 1 MiB block (mmapped), allocate and free another one, and report how much glibc keeps free afterwards.
_PROBE = """
import json, sys
from gateway_sim import allocator
pinned = allocator.pin_mmap_threshold(int(sys.argv[1]))
small = [bytearray(64) for _ in range(1000)]
block = bytearray(1 << 20)
del block
before = allocator.heap_stats()
block = bytearray(1 << 20)
keeper = bytearray(200)  # allocated above the block, so the heap's top cannot simply shrink
del block
after = allocator.heap_stats()
print(json.dumps({"pinned": pinned, "kept_free": after["malloc_free_bytes"] - before["malloc_free_bytes"]}))
"""


def _probe(threshold: int) -> dict:
    out = subprocess.run([sys.executable, "-c", _PROBE, str(threshold)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.parametrize("value", [-1, allocator.MAX_MMAP_THRESHOLD + 1])
def test_out_of_range_thresholds_are_refused(value: int) -> None:
    with pytest.raises(ValueError, match="malloc_mmap_threshold"):
        allocator.pin_mmap_threshold(value)


@glibc_only
def test_moving_threshold_keeps_a_freed_block_and_a_pinned_one_does_not() -> None:
    moving, pinned = _probe(0), _probe(allocator.DEFAULT_MMAP_THRESHOLD)
    assert not moving["pinned"] and pinned["pinned"]
    assert moving["kept_free"] >= 900 * 1024  # the second block came from the heap and stays there
    assert pinned["kept_free"] < 256 * 1024  # mmapped, given back on free


@glibc_only
def test_heap_stats_follow_an_allocation() -> None:
    before = allocator.heap_stats()
    assert before is not None and before["malloc_in_use_bytes"] > 0
    block = bytearray(8 << 20)
    during = allocator.heap_stats()
    del block
    after = allocator.heap_stats()
    assert during["malloc_in_use_bytes"] - before["malloc_in_use_bytes"] >= 8 << 20
    assert during["malloc_in_use_bytes"] - after["malloc_in_use_bytes"] >= 8 << 20


def test_gateway_reports_its_allocator(start_gateway) -> None:
    for args, threshold in (((), allocator.DEFAULT_MMAP_THRESHOLD), (("--malloc-mmap-threshold", "0"), 0)):
        gw = start_gateway(*args)
        with urllib.request.urlopen(f"{gw.url}/admin/process", timeout=10) as resp:
            process = json.load(resp)
        assert process["malloc_mmap_threshold"] == threshold
        if platform.libc_ver()[0] == "glibc":
            assert process["malloc_in_use_bytes"] > 1 << 20 and process["malloc_free_bytes"] >= 0
        gw.stop()


@pytest.mark.parametrize(("flag", "message"), [("--malloc-mmap-threshold", "--malloc-mmap-threshold must be 0"),
                                              ("--gc-threshold", "--gc-threshold must be >= 0")])
def test_gateway_refuses_a_bad_memory_knob(flag: str, message: str) -> None:
    out = subprocess.run([sys.executable, "-m", "gateway_sim", "--db-url", "postgresql://127.0.0.1:1/x",
                          flag, "-4"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr
