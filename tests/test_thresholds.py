"""The threshold/regression grammar and key resolution of ``harness.gate.thresholds``."""

from __future__ import annotations

import operator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.gate.thresholds import (
    GrammarError,
    KeyLookupError,
    parse_key,
    parse_regression,
    parse_threshold,
    resolve,
)
from tests.gate_samples import BENCH, SUMMARY


def _value(expression_key: str, document: dict = SUMMARY) -> float | None:
    return resolve(document, parse_key(expression_key), "summary.json")


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("cleanup.total_ms.p95 < 80.5", True),
        ("cleanup.total_ms.p95 < 80", False),
        ("cleanup.total_ms.p95 <= 80", True),
        ("cleanup.total_ms.p95 <= 79.9", False),
        ("cleanup.total_ms.p95 > 79", True),
        ("cleanup.total_ms.p95 > 80", False),
        ("cleanup.total_ms.p95 >= 80", True),
        ("cleanup.total_ms.p95 >= 80.1", False),
        ("pool.timeouts == 0", True),
        ("cleanup.cycles == 11", False),
        ("cleanup.cycles != 11", True),
        ("pool.timeouts != 0", False),
        ("cleanup.total_ms.p95<1e3", True),
        ("  cleanup.total_ms.p95   >=   -5  ", True),
    ],
)
def test_every_operator(expression: str, expected: bool) -> None:
    threshold = parse_threshold(expression)
    value = _value(threshold.key.text)
    assert value is not None
    assert threshold.check(value) is expected


@pytest.mark.parametrize(
    ("expression", "limit"),
    [
        ("cleanup.total_ms.p95 < 500ms", 500.0),
        ("cleanup.total_ms.p95 < 0.5s", 500.0),
        ("cleanup.total_ms.p95 < 2 s", 2000.0),
        ("cleanup.total_ms.p95 < 500", 500.0),
        ("locust.failure_ratio < 1%", 0.01),
        ("pool.exhausted_fraction <= 2.5%", 0.025),
        ("cleanup.model_ratio.p95 < 150%", 1.5),
        ("cleanup.model_ratio.p95 < 1.5", 1.5),
    ],
)
def test_units_convert_to_the_key_unit(expression: str, limit: float) -> None:
    assert parse_threshold(expression).limit == pytest.approx(limit)


def test_limit_is_shown_in_the_unit_written() -> None:
    threshold = parse_threshold("cleanup.total_ms.p95 < 0.5s")
    assert threshold.limit_text == "< 0.5 s"
    assert threshold.show(80.0) == "0.08 s"
    assert parse_threshold("locust.failure_ratio < 1%").show(0.0004) == "0.04%"
    assert parse_threshold("cleanup.total_ms.p95 < 500").show(80.0) == "80 ms"


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "cleanup.total_ms.p95",
        "< 500",
        "cleanup.total_ms.p95 << 500",
        "cleanup.total_ms.p95 <> 500",
        "cleanup.total_ms.p95 = 500",
        "cleanup.total_ms.p95 < five",
        "cleanup.total_ms.p95 < 500 kg",
        "cleanup.total_ms.p95 < 500 ms ms",
        "cleanup..p95 < 500",
        "rows[strategy].measured_ms < 5",
        "pool.timeouts < 5%",
        "pool.timeouts < 5ms",
        "locust.failure_ratio < 1s",
    ],
)
def test_bad_expressions_are_named(expression: str) -> None:
    with pytest.raises(GrammarError) as caught:
        parse_threshold(expression)
    assert str(caught.value).startswith(f"bad expression {expression!r}: ")


def test_unit_error_says_which_keys_take_it() -> None:
    with pytest.raises(GrammarError, match=r"'%' needs a ratio key"):
        parse_threshold("pool.timeouts < 5%")
    with pytest.raises(GrammarError, match=r"'s' needs a time key"):
        parse_threshold("locust.failure_ratio < 1s")


def test_list_index_and_selectors_on_a_bench_document() -> None:
    assert _value("rows.1.measured_ms", BENCH) == 110.0
    assert _value("rows[strategy=bounded,sessions=1000].measured_ms", BENCH) == 110.0
    assert _value("rows[strategy=bounded, sessions=1e2].model_ratio", BENCH) == 1.2
    assert _value("rows[strategy=sequential,skipped=false].measured_ms", BENCH) == 2100.0
    assert _value("rows[strategy=sequential].skipped", BENCH) == 0.0
    key = parse_key("rows[strategy=bounded,sessions=1000].measured_ms")
    assert key.is_time and not key.is_ratio


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("rows[strategy=bounded].measured_ms", "2 elements match"),
        ("rows[strategy=gather].measured_ms", "no element matches"),
        ("rows.7.measured_ms", "not found"),
        ("rows.1.nope", "not found"),
    ],
)
def test_selector_errors_name_the_key_and_the_file(key: str, message: str) -> None:
    with pytest.raises(KeyLookupError) as caught:
        _value(key, BENCH)
    assert key in str(caught.value) and "summary.json" in str(caught.value) and message in str(caught.value)


def test_missing_and_non_numeric_keys() -> None:
    with pytest.raises(KeyLookupError, match=r"'cleanup.total_ms.p999' not found in summary.json"):
        _value("cleanup.total_ms.p999")
    with pytest.raises(KeyLookupError, match=r"'pool.wait.p95' not found in summary.json \(no 'pool.wait'\)"):
        _value("pool.wait.p95")
    with pytest.raises(KeyLookupError, match=r"is an object, not a number \(its keys: p50, p95"):
        _value("cleanup.total_ms")
    with pytest.raises(KeyLookupError, match=r"is str, not a number"):
        _value("config.strategy")
    assert _value("sessions.zombie_ms.p95") is None


@pytest.mark.parametrize(
    ("expression", "baseline", "worst_allowed", "smaller_is_worse"),
    [
        ("cleanup.total_ms.p95=20%", 100.0, 120.0, False),
        ("cleanup.total_ms.p95=+20%", 100.0, 120.0, False),
        ("locust.rps=-10%", 80.0, 72.0, True),
        ("cleanup.total_ms.p95=50ms", 100.0, 150.0, False),
        ("cleanup.total_ms.p95 = 0.05s", 100.0, 150.0, False),
        ("pool.timeouts=2", 0.0, 2.0, False),
        ("pool.timeouts=20%", 0.0, 0.0, False),
    ],
)
def test_regression_limits(
    expression: str, baseline: float, worst_allowed: float, smaller_is_worse: bool
) -> None:
    regression = parse_regression(expression)
    assert regression.smaller_is_worse is smaller_is_worse
    assert regression.limit(baseline) == pytest.approx(worst_allowed)
    assert regression.check(baseline, worst_allowed)
    step = -0.01 if smaller_is_worse else 0.01
    assert not regression.check(baseline, worst_allowed + step)


@pytest.mark.parametrize(
    "expression",
    ["cleanup.total_ms.p95", "cleanup.total_ms.p95=", "cleanup.total_ms.p95 < 20%", "locust.rps=5s", "=20%",
     "cleanup.total_ms.p95=20%%"],
)
def test_bad_regressions_are_named(expression: str) -> None:
    with pytest.raises(GrammarError, match=r"bad expression"):
        parse_regression(expression)


OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


@given(
    value=st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    limit=st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    op=st.sampled_from(sorted(OPS)),
)
def test_ordering_operators_agree_with_python(value: float, limit: float, op: str) -> None:
    threshold = parse_threshold(f"cleanup.cycles {op} {limit!r}")
    assert threshold.check(value) is OPS[op](value, limit)
