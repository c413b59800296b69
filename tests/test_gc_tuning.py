"""The gateway's garbage-collector knob: the start-up heap frozen out of later collections, young ones rarer."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from gateway_sim import gc_tuning

# In a process of its own: freezing is for the life of the process.
_PROBE = """
import gc, json, sys
from gateway_sim import gc_tuning
changed = gc_tuning.tune_gc(int(sys.argv[1]))
garbage = []
for _ in range(200):  # reference cycles a young collection has to find
    node = {}
    node["self"] = node
    garbage.append(node)
del garbage, node
print(json.dumps({"changed": changed, **gc_tuning.gc_stats(), "young": gc.collect(0), "all": gc.collect()}))
"""


def _probe(threshold: int) -> dict:
    out = subprocess.run([sys.executable, "-c", _PROBE, str(threshold)], capture_output=True, text=True,
                         timeout=60, check=True)
    return json.loads(out.stdout)


def test_tuned_collector_freezes_the_heap_and_still_collects_cycles() -> None:
    tuned, untouched = _probe(gc_tuning.DEFAULT_GC_THRESHOLD), _probe(0)
    assert tuned["changed"] and tuned["gc_threshold"] == gc_tuning.DEFAULT_GC_THRESHOLD
    assert tuned["gc_frozen_objects"] > 10_000  # what the imports left behind
    assert not untouched["changed"] and untouched["gc_frozen_objects"] == 0
    assert untouched["gc_threshold"] == 700
    # the cycles made after the freeze are collected: with the tuned threshold all still in the young generation
    assert tuned["young"] >= 200
    assert untouched["young"] + untouched["all"] >= 200


def test_negative_threshold_is_refused() -> None:
    with pytest.raises(ValueError, match="gc_threshold must be 0"):
        gc_tuning.tune_gc(-1)


def test_gateway_reports_its_collector(start_gateway) -> None:
    for args, threshold in (((), gc_tuning.DEFAULT_GC_THRESHOLD), (("--gc-threshold", "0"), 700)):
        gw = start_gateway(*args)
        with urllib.request.urlopen(f"{gw.url}/admin/process", timeout=10) as resp:
            process = json.load(resp)
        assert process["gc_threshold"] == threshold
        assert (process["gc_frozen_objects"] > 10_000) == (threshold != 700)
        gw.stop()


_BLOCK_PROBE = """
import gc, json
from gateway_sim import gc_tuning
with gc_tuning.tuned_gc():
    inside = (gc.get_threshold()[0], gc.get_freeze_count())
print(json.dumps({"inside": inside, "after": (gc.get_threshold()[0], gc.get_freeze_count())}))
"""


def test_tuned_block_restores_the_collector() -> None:
    out = subprocess.run([sys.executable, "-c", _BLOCK_PROBE], capture_output=True, text=True, timeout=60, check=True)
    probe = json.loads(out.stdout)
    assert probe["inside"][0] == gc_tuning.DEFAULT_GC_THRESHOLD and probe["inside"][1] > 10_000
    assert probe["after"] == [700, 0]


_LOCUST_PROBE = """
import gc, json
from locust import events


@events.quitting.add_listener
def _report(environment, **kw):
    print("GCPROBE " + json.dumps({"threshold": gc.get_threshold()[0], "frozen": gc.get_freeze_count()}), flush=True)
"""


def test_locust_process_runs_the_same_collector(tmp_path) -> None:
    probe = tmp_path / "gc_probe.py"
    probe.write_text(_LOCUST_PROBE, encoding="utf-8")
    root = Path(__file__).resolve().parents[1]
    # nothing listens on port 9: the one user's sessions fail at once, the run ends after 2 s
    out = subprocess.run([sys.executable, "-m", "locust", "-f", f"{root / 'locustfiles' / 'mcp_sessions.py'},{probe}",
                          "--headless", "-u", "1", "-r", "1", "-t", "2s", "--host", "http://127.0.0.1:9"],
                         capture_output=True, text=True, timeout=120, cwd=root)
    line = next(x for x in (out.stdout + out.stderr).splitlines() if x.startswith("GCPROBE "))
    report = json.loads(line.removeprefix("GCPROBE "))
    assert report["threshold"] == gc_tuning.DEFAULT_GC_THRESHOLD and report["frozen"] > 10_000
