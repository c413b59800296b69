"""Reading and writing the result files: CSV rows, JSON documents, JSON lines."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> None:
    """Rows as CSV: exactly ``columns`` when given, else every key in the order first seen; ``None`` as an empty
    cell, nested values as JSON. The one CSV writer of the result files."""
    header = list(columns or [])
    if columns is None:
        for row in rows:
            header += [k for k in row if k not in header]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()})


def write_json(path: Path, document: Any) -> None:
    """A JSON document, indented, with a final newline."""
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def read_jsonl(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Every JSON line of ``paths`` (missing files and torn last lines are skipped)."""
    out: list[dict[str, Any]] = []
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out
