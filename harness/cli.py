"""``python -m harness COMMAND``: one sub-command per module, each with ``add_arguments`` and ``run``.

Exit codes: 0 success, 2 usage or input error (a one-line message), 1 the harness itself failed;
``gate`` also uses 99 for a failed threshold or regression.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from harness.errors import ObserveError, UsageError
from harness.sut.gateway_proc import GatewayError
from harness.sut.postgres import ProviderError

# command -> (module, one-line help). Each module defines add_arguments(parser) and run(args) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("harness.commands.up", "start Postgres and the gateway and keep them running until Ctrl-C"),
    "run": ("harness.commands.run",
            "the main job: Locust churns sessions while cleanup cycles and the DB pool are measured"),
    "bench": ("harness.commands.bench", "measure cleanup cycles in-process against real Postgres, beside the model"),
    "model": ("harness.commands.model", "print the model's cycle time and binding constraint without running anything"),
    "latency": ("harness.commands.latency", "show or change the injected DB latency of a running gateway"),
    "gate": ("harness.gate.evaluate",
             "pass or fail results on thresholds and baseline regressions (exit 99 on failure)"),
    "baseline": ("harness.gate.baseline", "save a run's results as a baseline for 'gate --baseline'"),
    "sweep": ("harness.commands.sweep", "capacity-planning sweep over a grid of knobs, with report and recommendation"),
    "fault": ("harness.commands.fault",
              "inject database faults into a running 'harness up' (kill, restart, errors, …)"),
    "observe": ("harness.commands.observe",
                "watch a gateway's Postgres read-only and infer its cleanup cycles and pool from the database alone"),
    "soak": ("harness.commands.soak", "long churn run checking session accounting, leaks, RSS, fds and asyncio tasks"),
    "contextforge": ("harness.commands.contextforge",
                     "build the Python >= 3.12 environment for --registry contextforge"),
}

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class CliParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line and exit 2, as for every input error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _chosen(argv: Sequence[str] | None) -> set[str]:
    """The sub-command named in ``argv`` (all of them when none is, or ``argv`` is not known)."""
    if argv is None:
        return set(COMMANDS)
    named = [a for a in argv if a in COMMANDS]
    return {named[0]} if named else set(COMMANDS)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The top-level parser. Only the chosen sub-command's module is imported (so ``harness model`` starts
    without the server, the load or the plots); without ``argv`` every sub-command is built."""
    parser = CliParser(prog="python -m harness", description="Load-test the session cleanup of an MCP gateway.")
    parser.add_argument("--log-level", default="WARNING", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CliParser)
    sub.required = True
    chosen = _chosen(argv)
    for name, (module_name, help_text) in COMMANDS.items():
        if name not in chosen:
            sub.add_parser(name, help=help_text)
            continue
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip())
        module.add_arguments(command)
        command.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, dispatch, and map errors to exit codes."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args._module.run(args))
    except UsageError as exc:
        print(f"harness {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ProviderError, GatewayError, ObserveError, OSError) as exc:
        print(f"harness {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"harness {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception:  # a bug in the harness, not bad input: say so, with the traceback in the log
        logging.getLogger("harness").exception("harness %s failed unexpectedly", args.command)
        print(f"harness {args.command}: internal error (traceback above); please report it", file=sys.stderr)
        return EXIT_FAILED
