"""What the results say about each fault: its window, the cycles it touched, and recovery (pure)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from harness.faults.spec import FaultSpec
from harness.scenario.results import FaultResult, RecoveryCycle


def _cycle_span(cycle: dict[str, Any], started_at: float) -> tuple[float, float]:
    start = datetime.fromisoformat(str(cycle["started_at"])).timestamp() - started_at
    return start, start + float(cycle["total_ms"]) / 1000.0


def fault_summary(specs: list[FaultSpec], events: list[dict[str, Any]], cycles: list[dict[str, Any]],
                  started_at: float) -> list[FaultResult]:
    """Per fault: its window (collector time), the cycles it touched and what they did, and recovery.

    The window runs from the fault's start to its end; an instant kill reaches as far as the first cycle
    of each worker that starts after it (that cycle meets the dead connections). "Recovered" means the
    first cycle of every worker that starts after the window, and overlaps no other fault's window,
    completed with 0 refresh errors and no error.
    """
    out = []
    windows: dict[str, tuple[float, float]] = {}
    spans = [(_cycle_span(c, started_at), c) for c in cycles]
    for spec in specs:
        mine = [e for e in events if e.get("kind") == "fault" and e.get("fault") == spec.text]
        start = next((e for e in mine if e["phase"] == "start"), None)
        end = next((e for e in mine if e["phase"] == "end"), None)
        failed = next((e for e in mine if e["phase"] == "failed"), None)
        entry: dict[str, Any] = {"spec": spec.text, "kind": spec.kind, "value": spec.value,
                                 "start_t": start["t"] if start else None, "end_t": None, "applied": bool(start),
                                 "error": failed.get("error") if failed else None}
        if start is None:
            out.append(entry)
            continue
        a = float(start["t"])
        b = float(end["t"]) if end else a
        if spec.kind == "kill-backends":
            for worker in {c["worker"] for c in cycles}:
                first = min((s for s, c in spans if c["worker"] == worker and s[0] >= a), default=None)
                if first is not None:
                    b = max(b, first[1])
        windows[spec.text] = (a, b)
        during = [c for (s, e), c in spans if s <= b and e >= a]
        out.append(entry | {"_during": during, "_b": b, "_start": start})
    for entry in out:
        if "_b" not in entry:
            continue
        b, during, start = entry.pop("_b"), entry.pop("_during"), entry.pop("_start")
        others = [w for text, w in windows.items() if text != entry["spec"]]
        after: dict[str, dict[str, Any]] = {}
        for (s, e), c in sorted(spans, key=lambda x: x[0][0]):
            overlaps_other = any(s <= ob and e >= oa for oa, ob in others)
            if s > b and c["worker"] not in after and not overlaps_other:
                after[c["worker"]] = c
        entry.update({
            "end_t": round(b, 3),
            "detail": {k: v for k, v in start.items() if k not in ("t", "kind", "fault", "phase", "label")},
            "cycles_during": len(during),
            "refresh_errors_during": sum(int(c["refresh_errors"]) for c in during),
            "cycle_errors_during": sum(1 for c in during if c.get("error")),
            "removed_missing_during": sum(int(c["removed_missing"]) for c in during),
            "recovery_cycles": [{"worker": w, "cycle": c["cycle"], "refresh_errors": c["refresh_errors"],
                                 "error": c.get("error")} for w, c in sorted(after.items())],
            "recovered": bool(after) and all(int(c["refresh_errors"]) == 0 and not c.get("error")
                                             for c in after.values()),
        })
    return [_typed(entry) for entry in out]


def _typed(entry: dict[str, Any]) -> FaultResult:
    recovery = entry.get("recovery_cycles")
    return FaultResult(**{**entry, "recovery_cycles": None if recovery is None
                          else [RecoveryCycle(**r) for r in recovery]})
