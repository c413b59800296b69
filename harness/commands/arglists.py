"""Comma-separated list arguments (``--sessions 100,1000``) with one clear error per bad item."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def list_of(convert: Callable[[str], T], *, choices: tuple[str, ...] | None = None,
            minimum: float | None = None) -> Callable[[str], list[T]]:
    """An argparse ``type=`` that splits on commas and converts/validates each item."""

    def parse(text: str) -> list[T]:
        items = [part.strip() for part in text.split(",") if part.strip()]
        if not items:
            raise argparse.ArgumentTypeError("expected a comma-separated list, got nothing")
        values: list[T] = []
        for item in items:
            if choices is not None and item not in choices:
                raise argparse.ArgumentTypeError(f"{item!r} is not one of {', '.join(choices)}")
            try:
                value = convert(item)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{item!r} is not a valid {convert.__name__}") from None
            if minimum is not None and float(value) < minimum:  # type: ignore[arg-type]
                raise argparse.ArgumentTypeError(f"{item!r} must be >= {minimum:g}")
            values.append(value)
        return values

    parse.__name__ = f"list of {convert.__name__}"
    return parse


def duration_seconds(text: str) -> float:
    """``90``, ``90s``, ``5m``, ``1h`` → seconds (as Locust's ``--run-time`` takes them)."""
    value = text.strip().lower()
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    try:
        seconds = float(value[:-1]) * units[value[-1]] if value and value[-1] in units else float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 60, 60s, 5m or 1h") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive duration")
    return seconds
