"""``python -m harness gate RESULTS``: pass or fail a run on thresholds and on regressions from a baseline.

RESULTS is a results directory (with summary.json) or a JSON file (a summary, a bench JSON, a baseline file).
Thresholds (``--threshold "cleanup.total_ms.p95 < 500ms"``) and regressions (``--max-regression
"cleanup.model_ratio.p95=20%"`` with ``--baseline``) follow the grammar of ``harness.gate.thresholds``.

They may also live in a TOML file (``--thresholds gate.toml``) or, when no check is given on the command line,
in a ``[tool.mcp_loadtest.gate]`` table of ./pyproject.toml, with the same keys::

    thresholds = ["cleanup.total_ms.p95 < 500ms", "pool.timeouts == 0"]
    baseline = "baseline.json"            # optional, relative to the TOML file
    [max_regression]                      # or: max_regression = ["cleanup.model_ratio.p95=20%"]
    "cleanup.model_ratio.p95" = "20%"

Exit codes: 0 every check passed, 99 a check failed, 2 a usage or input error, 1 the harness failed.
``gate.md`` and ``junit.xml`` are written into the results directory (or beside the JSON file).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.gate.baseline import ResultsDoc, describe_machine, load_results
from harness.gate.thresholds import (
    Outcome,
    Regression,
    Threshold,
    format_number,
    parse_regression,
    parse_threshold,
    resolve,
    show_value,
)
from harness.gate.tomlfile import read_toml
from harness.report.gate_report import print_outcomes, write_reports

EXIT_PASSED = 0
EXIT_HARNESS_FAILED = 1
EXIT_USAGE = 2
EXIT_GATE_FAILED = 99
PYPROJECT_TABLE = ("tool", "mcp_loadtest", "gate")
_FILE_KEYS = {"thresholds", "max_regression", "baseline"}


@dataclass(frozen=True)
class GateConfig:
    """The checks to run and the baseline to compare with."""

    thresholds: tuple[Threshold, ...]
    regressions: tuple[Regression, ...]
    baseline: Path | None


def _string_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise UsageError(f"{where} must be a list of strings")
    return value


def _regressions_from(value: Any, where: str) -> list[str]:
    if isinstance(value, Mapping):
        if not all(isinstance(v, str) for v in value.values()):
            raise UsageError(f'{where} values must be strings such as "20%"')
        return [f"{key}={amount}" for key, amount in value.items()]
    return _string_list(value, where)


def checks_from_table(
    table: Mapping[str, Any], where: str, base_dir: Path
) -> tuple[list[str], list[str], Path | None]:
    """Thresholds, regressions and baseline path of a gate table (``where`` names it in errors)."""
    unknown = sorted(set(table) - _FILE_KEYS)
    if unknown:
        known = ", ".join(sorted(_FILE_KEYS))
        raise UsageError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {known})")
    thresholds = _string_list(table.get("thresholds", []), f"{where}: thresholds")
    regressions = _regressions_from(table.get("max_regression", []), f"{where}: max_regression")
    baseline = table.get("baseline")
    if baseline is not None and not isinstance(baseline, str):
        raise UsageError(f"{where}: baseline must be a path string")
    return thresholds, regressions, (base_dir / baseline if baseline else None)


def _pyproject_table(path: Path) -> Mapping[str, Any] | None:
    node: Any = read_toml(path)
    for name in PYPROJECT_TABLE:
        if not isinstance(node, Mapping) or name not in node:
            return None
        node = node[name]
    if not isinstance(node, Mapping):
        raise UsageError(f"{path}: [{'.'.join(PYPROJECT_TABLE)}] must be a table")
    return node


def build_config(
    thresholds: Sequence[str],
    thresholds_file: Path | None,
    baseline: Path | None,
    max_regressions: Sequence[str],
    cwd: Path | None = None,
) -> GateConfig:
    """Gather checks from the arguments, the TOML file, or ./pyproject.toml when no check was given."""
    texts, regression_texts, file_baseline = list(thresholds), list(max_regressions), None
    if thresholds_file is not None:
        more, more_regressions, file_baseline = checks_from_table(
            read_toml(thresholds_file), str(thresholds_file), thresholds_file.parent
        )
        texts, regression_texts = texts + more, regression_texts + more_regressions
    elif not texts and not regression_texts:
        pyproject = (cwd or Path.cwd()) / "pyproject.toml"
        table = _pyproject_table(pyproject) if pyproject.is_file() else None
        if table is not None:
            where = f"{pyproject} [{'.'.join(PYPROJECT_TABLE)}]"
            texts, regression_texts, file_baseline = checks_from_table(table, where, pyproject.parent)
    config = GateConfig(
        tuple(parse_threshold(t) for t in texts),
        tuple(parse_regression(r) for r in regression_texts),
        baseline or file_baseline,
    )
    if not config.thresholds and not config.regressions:
        raise UsageError(
            "no checks: give --threshold, --thresholds FILE, "
            "or a [tool.mcp_loadtest.gate] table in ./pyproject.toml"
        )
    if config.regressions and config.baseline is None:
        raise UsageError("--max-regression needs a baseline: --baseline DIR_OR_JSON or a baseline key")
    if config.baseline is not None and not config.regressions:
        raise UsageError(f"baseline {config.baseline} given but no --max-regression to check against it")
    return config


def evaluate_threshold(threshold: Threshold, doc: ResultsDoc) -> Outcome:
    """Check one threshold against the results."""
    value = resolve(doc.summary, threshold.key, str(doc.source))
    if value is None:
        return Outcome("threshold", threshold.expression, False, "null (no value)", threshold.limit_text)
    return Outcome("threshold", threshold.expression, threshold.check(value), threshold.show(value),
                   threshold.limit_text)


def cross_machine_note(regression: Regression, current: ResultsDoc, baseline: ResultsDoc) -> str | None:
    """A note when an absolute time is compared with a baseline from another (or an unknown) machine."""
    if not regression.key.is_absolute_time:
        return None
    if current.machine is not None and current.machine == baseline.machine:
        return None
    return (
        f"{regression.key.text} is an absolute time compared across machines (baseline: "
        f"{describe_machine(baseline.machine)}; this run: {describe_machine(current.machine)}); "
        "machine-independent figures such as cleanup.model_ratio are steadier"
    )


def evaluate_regression(regression: Regression, current: ResultsDoc, baseline: ResultsDoc) -> Outcome:
    """Check one regression of the results against the baseline."""
    value = resolve(current.summary, regression.key, str(current.source))
    base = resolve(baseline.summary, regression.key, str(baseline.source))
    note = cross_machine_note(regression, current, baseline)
    if base is None:
        raise UsageError(f"key {regression.key.text!r} is null in the baseline {baseline.source}")
    limit = regression.limit(base)
    word = "≥" if regression.smaller_is_worse else "≤"
    limit_text = (f"{word} {show_value(limit, regression.key, None)} (baseline "
                  f"{show_value(base, regression.key, None)} {regression.allowance_text})")
    if value is None:
        return Outcome("regression", regression.expression, False, "null (no value)", limit_text, note)
    measured = show_value(value, regression.key, None)
    if base:
        measured += f" ({'+' if value >= base else ''}{format_number((value - base) / abs(base) * 100)}%)"
    passed = regression.check(base, value)
    return Outcome("regression", regression.expression, passed, measured, limit_text, note)


def evaluate(config: GateConfig, doc: ResultsDoc, baseline: ResultsDoc | None) -> list[Outcome]:
    """Every threshold, then every regression; a missing key raises before anything is reported."""
    outcomes = [evaluate_threshold(t, doc) for t in config.thresholds]
    if baseline is not None:
        outcomes += [evaluate_regression(r, doc, baseline) for r in config.regressions]
    return outcomes


def run_gate(
    results_dir: Path,
    thresholds: list[str],
    thresholds_file: Path | None = None,
    baseline: Path | None = None,
    max_regressions: Sequence[str] = (),
) -> int:
    """Gate the results at ``results_dir``: print a line per check, write the reports; the exit code."""
    try:
        config = build_config(thresholds, thresholds_file, baseline, max_regressions)
        doc = load_results(results_dir)
        baseline_doc = load_results(config.baseline) if config.baseline is not None else None
        outcomes = evaluate(config, doc, baseline_doc)
    except UsageError as exc:
        print(f"harness gate: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print_outcomes(outcomes)
    try:
        paths = write_reports(
            outcomes, doc.out_dir, str(doc.source), str(baseline_doc.source) if baseline_doc else None
        )
    except OSError as exc:
        print(f"harness gate: error: cannot write the reports into {doc.out_dir}: {exc}", file=sys.stderr)
        return EXIT_HARNESS_FAILED
    print(f"reports: {', '.join(map(str, paths))}")
    return EXIT_GATE_FAILED if any(not o.passed for o in outcomes) else EXIT_PASSED


_EPILOG = """\
keys: dotted paths, e.g. cleanup.total_ms.p95, rows.0.model_ratio,
      rows[strategy=bounded,sessions=1000].measured_ms (bench JSON)
units: ms or s on *_ms keys, % on *_ratio / *_fraction keys (1% = 0.01)
regressions: KEY=20% (larger is worse), KEY=-20% (smaller is worse), KEY=50ms (absolute)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    parser.add_argument("results", type=Path, metavar="RESULTS", help="results directory or JSON file")
    parser.add_argument("--threshold", action="append", default=[], metavar="EXPR",
                        help='e.g. "cleanup.total_ms.p95 < 500ms" (repeatable)')
    parser.add_argument("--thresholds", type=Path, metavar="TOML", help="read checks from a TOML file")
    parser.add_argument("--baseline", type=Path, metavar="DIR_OR_JSON",
                        help="results directory or baseline.json to compare with")
    parser.add_argument("--max-regression", action="append", default=[], metavar="KEY=PCT",
                        help='e.g. "cleanup.model_ratio.p95=20%%"; KEY=-10%%: smaller is worse (repeatable)')


def run(args: argparse.Namespace) -> int:
    return run_gate(args.results, args.threshold, args.thresholds, args.baseline, args.max_regression)
