"""Render gate outcomes: console lines, ``gate.md`` (a CI job summary) and ``junit.xml``."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.text import Text

from harness.gate.thresholds import Outcome

PASS, FAIL = "✓", "✗"
GATE_MD = "gate.md"
JUNIT_XML = "junit.xml"


def _mark(outcome: Outcome) -> str:
    return PASS if outcome.passed else FAIL


def _label(outcome: Outcome) -> str:
    return outcome.expression if outcome.kind == "threshold" else f"regression {outcome.expression}"


def notes(outcomes: Sequence[Outcome]) -> list[str]:
    """The distinct notes attached to outcomes, in order."""
    return list(dict.fromkeys(o.note for o in outcomes if o.note))


def headline(outcomes: Sequence[Outcome]) -> str:
    """One line: how many checks passed or failed."""
    failed = sum(not o.passed for o in outcomes)
    if failed:
        return f"gate failed: {failed} of {len(outcomes)} checks failed"
    return f"gate passed: all {len(outcomes)} checks passed"


def print_outcomes(outcomes: Sequence[Outcome], console: Console | None = None) -> None:
    """A ✓/✗ line per check with the measured value and the limit, then notes and the headline."""
    console = console or Console(highlight=False, soft_wrap=True)
    for outcome in outcomes:
        style = "green" if outcome.passed else "bold red"
        console.print(
            Text.assemble(
                (_mark(outcome), style),
                f" {_label(outcome)}: measured {outcome.measured}, limit {outcome.limit}",
            )
        )
    for note in notes(outcomes):
        console.print(Text(f"note: {note}", style="yellow"))
    failed = any(not o.passed for o in outcomes)
    console.print(Text(headline(outcomes), style="bold red" if failed else "bold green"))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(outcomes: Sequence[Outcome], results: str, baseline: str | None) -> str:
    """A Markdown report fit for ``$GITHUB_STEP_SUMMARY``."""
    failed = any(not o.passed for o in outcomes)
    lines = [
        f"### {FAIL if failed else PASS} Cleanup {headline(outcomes)}",
        "",
        f"Results: `{results}`" + (f" · baseline: `{baseline}`" if baseline else ""),
        "",
        "| | Check | Measured | Limit |",
        "|:-:|---|--:|---|",
    ]
    for o in outcomes:
        check = f"`{_cell(o.expression)}`" + (" (regression)" if o.kind == "regression" else "")
        lines.append(f"| {_mark(o)} | {check} | {_cell(o.measured)} | {_cell(o.limit)} |")
    found = notes(outcomes)
    if found:
        lines += ["", "**Notes**", ""] + [f"- {note}" for note in found]
    return "\n".join(lines) + "\n"


def junit(outcomes: Sequence[Outcome]) -> str:
    """JUnit XML: one testcase per check, a ``<failure>`` for each failed one."""
    failures = sum(not o.passed for o in outcomes)
    suites = ET.Element("testsuites", name="harness gate", tests=str(len(outcomes)), failures=str(failures))
    suite = ET.SubElement(
        suites, "testsuite", name="harness gate", tests=str(len(outcomes)), failures=str(failures),
        errors="0", skipped="0", time="0",
    )
    for o in outcomes:
        case = ET.SubElement(suite, "testcase", classname=f"gate.{o.kind}", name=o.expression, time="0")
        detail = f"measured {o.measured}, limit {o.limit}"
        if not o.passed:
            failure = ET.SubElement(case, "failure", message=detail, type=f"{o.kind}-failed")
            failure.text = f"{o.expression}: {detail}"
        text = detail + (f"\nnote: {o.note}" if o.note else "")
        ET.SubElement(case, "system-out").text = text
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def write_reports(
    outcomes: Sequence[Outcome], out_dir: Path, results: str, baseline: str | None
) -> list[Path]:
    """Write ``gate.md`` and ``junit.xml`` into ``out_dir``; returns their paths."""
    md_path, junit_path = out_dir / GATE_MD, out_dir / JUNIT_XML
    md_path.write_text(markdown(outcomes, results, baseline), encoding="utf-8")
    junit_path.write_text(junit(outcomes), encoding="utf-8")
    return [md_path, junit_path]
