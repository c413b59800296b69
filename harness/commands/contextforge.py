"""``python -m harness contextforge setup [--version V | --source PATH] [--python PATH]``: build (or reuse) the
Python >= 3.12 environment in which gateway processes host ContextForge's own session registry
(``--registry contextforge``), and print its path.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from harness.sut.contextforge_env import DEFAULT_VERSION, PACKAGE, EnvError, build_env


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m harness contextforge``."""
    sub = parser.add_subparsers(dest="contextforge_command", metavar="ACTION", parser_class=type(parser))
    sub.required = True
    setup = sub.add_parser("setup", help="build or reuse the environment and print its path",
                           description=__doc__.strip() if __doc__ else None)
    which = setup.add_mutually_exclusive_group()
    which.add_argument("--version", default=DEFAULT_VERSION,
                       help=f"the {PACKAGE} release to install (default {DEFAULT_VERSION})")
    which.add_argument("--source", type=Path, default=None,
                       help="a local checkout of the gateway, installed editable (gate your own branch)")
    setup.add_argument("--python", default=None,
                       help="the Python >= 3.12 to build on (default: found on PATH, under pyenv, or in /usr/bin)")


def run(args: argparse.Namespace) -> int:
    """Build or reuse the environment; print its path (stdout) and how long it took (stderr)."""
    started = time.monotonic()
    try:
        env, reused = build_env(args.version, args.source, args.python)
    except EnvError as exc:
        print(f"harness contextforge: error: {exc}", file=sys.stderr)
        return 1
    what = f"{PACKAGE} {env.version}" + (f" from {env.source}" if env.source else "")
    verb = "reused" if reused else f"built in {time.monotonic() - started:.0f} s"
    print(f"contextforge environment ({what}, Python {env.python_version}) {verb}", file=sys.stderr)
    print(env.path)
    return 0
