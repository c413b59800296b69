"""Threshold and regression grammar, and their evaluation on a JSON document (pure: no I/O).

Keys
    A dotted path into the document: ``cleanup.total_ms.p95``. An integer segment indexes a list
    (``rows.0.model_ratio``). ``NAME[field=value,...]`` picks the one element of list NAME whose fields equal
    the values: ``rows[strategy=bounded,sessions=1000].measured_ms``. Numbers compare numerically
    (``sessions=1e3`` matches 1000), ``true``/``false`` match booleans, anything else compares as text.
    A selector that matches no element, or more than one, is an error.

Thresholds: ``KEY OP NUMBER[UNIT]``
    OP is one of ``< <= > >= == !=``. UNIT is optional: ``ms`` or ``s`` on a time key (a segment ending in
    ``_ms``; seconds are converted to ms), ``%`` on a ratio key (a segment ending in ``_ratio`` or
    ``_fraction``; ``1%`` is 0.01). A bare number is in the key's own unit. Example:
    ``cleanup.total_ms.p95 < 0.5s``, ``locust.failure_ratio < 1%``, ``pool.timeouts == 0``.

Regressions: ``KEY=[+|-]NUMBER[UNIT]``, compared with the same key of a baseline document
    ``%`` is relative to the baseline value; ``ms``/``s`` or a bare number is an absolute allowance.
    Larger is worse by default: ``cleanup.total_ms.p95=20%`` fails when the value exceeds baseline × 1.2.
    A leading ``-`` means smaller is worse: ``locust.rps=-10%`` fails when the value drops below
    baseline × 0.9.

A key whose value is ``null`` (e.g. a percentile of a run without cleanup cycles) evaluates as failed.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.errors import UsageError

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": lambda a, b: math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12),
    "!=": lambda a, b: not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12),
}
UNITS = ("ms", "s", "%")

_SEGMENT = r"[\w-]+(?:\[[^\]]*\])?"
_KEY_RE = re.compile(rf"\s*({_SEGMENT}(?:\.{_SEGMENT})*)")
_SEGMENT_RE = re.compile(r"([\w-]+)(?:\[([^\]]*)\])?")
_UNSIGNED = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_THRESHOLD_TAIL_RE = re.compile(rf"\s*(<=|>=|==|!=|<|>)\s*([-+]?{_UNSIGNED})\s*(ms|s|%)?\s*$")
_REGRESSION_TAIL_RE = re.compile(rf"\s*=\s*([-+]?)\s*({_UNSIGNED})\s*(ms|s|%)?\s*$")
_THRESHOLD_FORM = "expected KEY OP NUMBER[UNIT], OP one of < <= > >= == !=, UNIT ms, s or %"
_REGRESSION_FORM = "expected KEY=[+|-]NUMBER[%|ms|s], e.g. cleanup.total_ms.p95=20%"


class GrammarError(UsageError):
    """A threshold, regression or key expression does not parse; the message quotes it."""


class KeyLookupError(UsageError):
    """A key is absent from a document or its value is not a number; the message names key and source."""


@dataclass(frozen=True)
class Segment:
    """One step of a key: a mapping key or list index (``name``), or a list selector (``filters``)."""

    name: str
    filters: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Key:
    """A parsed key path."""

    text: str
    segments: tuple[Segment, ...]

    @property
    def is_time(self) -> bool:
        """A key in milliseconds: one of its segments ends in ``_ms``."""
        return any(s.name.endswith("_ms") for s in self.segments)

    @property
    def is_ratio(self) -> bool:
        """A dimensionless ratio: one of its segments ends in ``_ratio`` or ``_fraction``."""
        return any(s.name.endswith(("_ratio", "_fraction")) for s in self.segments)

    @property
    def is_absolute_time(self) -> bool:
        """A wall-clock figure that depends on the machine it was measured on."""
        return self.is_time and not self.is_ratio


@dataclass(frozen=True)
class Threshold:
    """``KEY OP LIMIT``; ``limit`` is in the key's own unit, ``unit`` as written (for display)."""

    expression: str
    key: Key
    op: str
    limit: float
    unit: str | None

    def check(self, value: float) -> bool:
        """Whether ``value`` satisfies the threshold."""
        return OPERATORS[self.op](value, self.limit)

    def show(self, value: float) -> str:
        """``value`` (in the key's unit) in the unit the expression was written in."""
        return show_value(value, self.key, self.unit)

    @property
    def limit_text(self) -> str:
        return f"{self.op} {self.show(self.limit)}"


@dataclass(frozen=True)
class Regression:
    """``KEY=[+|-]AMOUNT``: how much worse than the baseline the value may be."""

    expression: str
    key: Key
    amount: float  # a fraction of the baseline when relative, else in the key's unit
    relative: bool
    smaller_is_worse: bool

    def limit(self, baseline: float) -> float:
        """The worst value still allowed, given the baseline value."""
        allowance = abs(baseline) * self.amount if self.relative else self.amount
        return baseline - allowance if self.smaller_is_worse else baseline + allowance

    def check(self, baseline: float, value: float) -> bool:
        """Whether ``value`` is within the allowed regression from ``baseline``."""
        limit = self.limit(baseline)
        return value >= limit if self.smaller_is_worse else value <= limit

    @property
    def allowance_text(self) -> str:
        sign = "-" if self.smaller_is_worse else "+"
        if self.relative:
            return f"{sign}{format_number(self.amount * 100)}%"
        return f"{sign}{show_value(self.amount, self.key, None)}"


@dataclass(frozen=True)
class Outcome:
    """The result of one check, ready to print: ``measured`` and ``limit`` are display text."""

    kind: str  # "threshold" or "regression"
    expression: str
    passed: bool
    measured: str
    limit: str
    note: str | None = None


def format_number(value: float) -> str:
    """A short, exact-looking number: integers without a decimal point, else four significant digits."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    if abs(value) >= 1000:
        return f"{value:.1f}"
    return f"{value:.4g}"


def show_value(value: float, key: Key, unit: str | None) -> str:
    """``value`` (in the key's unit) written in ``unit``; time keys default to ms."""
    if unit == "s":
        return f"{format_number(value / 1000)} s"
    if unit == "%":
        return f"{format_number(value * 100)}%"
    if unit == "ms" or key.is_time:
        return f"{format_number(value)} ms"
    return format_number(value)


def parse_key(text: str) -> Key:
    """Parse a key path (see the module docstring)."""
    match = _KEY_RE.fullmatch(text.strip())
    if not match:
        raise GrammarError(f"bad key {text!r}: expected NAME(.NAME|.INDEX|.NAME[field=value,...])*")
    try:
        return _key_from(match.group(1))
    except GrammarError as exc:
        raise GrammarError(f"bad key {text!r}: {exc}") from None


def _key_from(text: str) -> Key:
    segments = []
    for raw in _split_segments(text):
        m = _SEGMENT_RE.fullmatch(raw)
        assert m is not None  # guaranteed by _KEY_RE
        name, selector = m.group(1), m.group(2)
        segments.append(Segment(name, _parse_selector(selector) if selector is not None else ()))
    return Key(text, tuple(segments))


def _split_segments(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "." and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _parse_selector(selector: str) -> tuple[tuple[str, str], ...]:
    filters = []
    for item in selector.split(","):
        field, eq, value = item.partition("=")
        if not eq or not re.fullmatch(r"[\w-]+", field.strip()) or not value.strip():
            raise GrammarError(f"selector [{selector}] should read [field=value,...]")
        filters.append((field.strip(), value.strip()))
    return tuple(filters)


def _split_expression(expression: str, tail: re.Pattern[str], form: str) -> tuple[Key, re.Match[str]]:
    head = _KEY_RE.match(expression)
    if not head:
        raise GrammarError(f"bad expression {expression!r}: it does not start with a key; {form}")
    match = tail.fullmatch(expression, head.end())
    if not match:
        raise GrammarError(f"bad expression {expression!r}: {form}")
    try:
        return _key_from(head.group(1)), match
    except GrammarError as exc:
        raise GrammarError(f"bad expression {expression!r}: {exc}") from None


def _to_key_unit(expression: str, key: Key, number: float, unit: str | None) -> float:
    if unit in ("ms", "s"):
        if not key.is_time:
            raise GrammarError(f"bad expression {expression!r}: unit {unit!r} needs a time key (…_ms)")
        return number * 1000 if unit == "s" else number
    if unit == "%":
        if not key.is_ratio:
            raise GrammarError(
                f"bad expression {expression!r}: unit '%' needs a ratio key (…_ratio or …_fraction)"
            )
        return number / 100
    return number


def parse_threshold(expression: str) -> Threshold:
    """Parse ``KEY OP NUMBER[UNIT]``; a :class:`GrammarError` quotes the expression."""
    key, m = _split_expression(expression, _THRESHOLD_TAIL_RE, _THRESHOLD_FORM)
    op, number, unit = m.group(1), float(m.group(2)), m.group(3)
    return Threshold(expression.strip(), key, op, _to_key_unit(expression, key, number, unit), unit)


def parse_regression(expression: str) -> Regression:
    """Parse ``KEY=[+|-]NUMBER[UNIT]``; a :class:`GrammarError` quotes the expression."""
    key, m = _split_expression(expression, _REGRESSION_TAIL_RE, _REGRESSION_FORM)
    sign, number, unit = m.group(1), float(m.group(2)), m.group(3)
    relative = unit == "%"
    amount = number / 100 if relative else _to_key_unit(expression, key, number, unit)
    return Regression(expression.strip(), key, amount, relative, smaller_is_worse=sign == "-")


def resolve(document: Any, key: Key, source: str) -> float | None:
    """The number at ``key`` in ``document`` (None for JSON null); ``source`` names the document in errors."""
    node = document
    for depth, segment in enumerate(key.segments):
        where = ".".join(_segment_text(s) for s in key.segments[: depth + 1])
        node = _step(node, segment, key, where, source)
    if node is None:
        return None
    if isinstance(node, bool | int | float):
        return float(node)
    kind = "an object" if isinstance(node, Mapping) else type(node).__name__
    hint = f" (its keys: {', '.join(map(str, list(node)[:12]))})" if isinstance(node, Mapping) else ""
    raise KeyLookupError(f"key {key.text!r} in {source} is {kind}, not a number{hint}")


def _segment_text(segment: Segment) -> str:
    if not segment.filters:
        return segment.name
    return f"{segment.name}[{','.join(f'{f}={v}' for f, v in segment.filters)}]"


def _step(node: Any, segment: Segment, key: Key, where: str, source: str) -> Any:
    detail = "" if where == key.text else f" (no {where!r})"
    missing = KeyLookupError(f"key {key.text!r} not found in {source}{detail}")
    if isinstance(node, Mapping):
        if segment.name not in node:
            raise missing
        node = node[segment.name]
        return _select(node, segment, key, where, source) if segment.filters else node
    if isinstance(node, Sequence) and not isinstance(node, str) and segment.name.isdigit():
        index = int(segment.name)
        if index >= len(node) or segment.filters:
            raise missing
        return node[index]
    raise missing


def _select(node: Any, segment: Segment, key: Key, where: str, source: str) -> Any:
    if not isinstance(node, Sequence) or isinstance(node, str):
        raise KeyLookupError(f"key {key.text!r} in {source}: {segment.name!r} is not a list to select from")
    found = [item for item in node if isinstance(item, Mapping) and _matches(item, segment.filters)]
    if len(found) != 1:
        count = "no element matches" if not found else f"{len(found)} elements match"
        raise KeyLookupError(f"key {key.text!r} in {source}: {count} {where!r} (need exactly one)")
    return found[0]


def _matches(item: Mapping[str, Any], filters: tuple[tuple[str, str], ...]) -> bool:
    return all(field in item and _equal(item[field], wanted) for field, wanted in filters)


def _equal(value: Any, wanted: str) -> bool:
    if isinstance(value, bool):
        return wanted.lower() == str(value).lower()
    if isinstance(value, int | float):
        try:
            return math.isclose(float(value), float(wanted), rel_tol=1e-9)
        except ValueError:
            return False
    return str(value) == wanted
