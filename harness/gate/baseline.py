"""``python -m harness baseline save RESULTS_DIR baseline.json``: keep a run's results as a gate baseline.

A baseline file is ``{"manifest": <manifest.json or {}>, "summary": <summary.json>}``; ``harness gate
--baseline`` accepts it, a results directory, or a summary/bench JSON file. The manifest's ``machine`` tells
the gate whether absolute times are compared across machines.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UsageError

SUMMARY = "summary.json"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ResultsDoc:
    """A results document: the figures (``summary``), the run's manifest, and where they came from."""

    summary: dict[str, Any]
    manifest: dict[str, Any]
    source: Path  # the JSON file the figures were read from
    out_dir: Path  # where reports about these results go

    @property
    def machine(self) -> Any:
        """The manifest's ``machine`` entry, or None when unknown."""
        return self.manifest.get("machine")


def read_json(path: Path) -> Any:
    """Parse a JSON file; a :class:`UsageError` names the file when it is missing or invalid."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not valid JSON: {exc}") from None


def load_results(path: Path) -> ResultsDoc:
    """Load a results directory (summary.json + manifest.json), a baseline file, or a summary/bench JSON."""
    if path.is_dir():
        source = path / SUMMARY
        if not source.is_file():
            raise UsageError(f"{path} has no {SUMMARY} (is it a harness run results directory?)")
        summary = _object(read_json(source), source)
        manifest_path = path / MANIFEST
        manifest = _object(read_json(manifest_path), manifest_path) if manifest_path.is_file() else {}
        return ResultsDoc(summary, manifest, source, path)
    data = _object(read_json(path), path)
    if set(data) == {"manifest", "summary"}:
        summary, manifest = _object(data["summary"], path), _object(data["manifest"] or {}, path)
        return ResultsDoc(summary, manifest, path, path.parent)
    manifest_path = path.parent / MANIFEST
    manifest = {}
    if path.name == SUMMARY and manifest_path.is_file():
        manifest = _object(read_json(manifest_path), manifest_path)
    return ResultsDoc(data, manifest, path, path.parent)


def _object(value: Any, path: Path) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UsageError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def save_baseline(results: Path, output: Path) -> ResultsDoc:
    """Write ``output`` from the results at ``results``; returns what was saved."""
    doc = load_results(results)
    payload = {"manifest": doc.manifest, "summary": doc.summary}
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc}") from None
    return doc


def describe_machine(machine: Any) -> str:
    """A short label for a manifest's ``machine`` entry."""
    if machine is None:
        return "unknown"
    if isinstance(machine, dict):
        picked = [str(machine[k]) for k in ("hostname", "processor") if machine.get(k)]
        if machine.get("cpu_count"):
            picked.append(f"{machine['cpu_count']} CPUs")
        text = ", ".join(picked) if picked else json.dumps(machine, sort_keys=True)
    else:
        text = str(machine)
    return text if len(text) <= 80 else text[:77] + "..."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    save = actions.add_parser("save", help="write a baseline file from a results directory")
    save.add_argument("results", type=Path, metavar="RESULTS_DIR", help="results directory (or summary.json)")
    save.add_argument("output", type=Path, metavar="BASELINE_JSON", help="baseline file to write")


def run(args: argparse.Namespace) -> int:
    doc = save_baseline(args.results, args.output)
    print(f"baseline: wrote {args.output} from {doc.source} (machine: {describe_machine(doc.machine)})")
    return 0
