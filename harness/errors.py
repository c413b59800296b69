"""Errors the CLI turns into a one-line message and exit code 2."""


class UsageError(Exception):
    """Bad arguments or input files: the message names the problem."""


class ObserveError(RuntimeError):
    """A database ``harness observe`` cannot watch (unreachable, no ``mcp_sessions``, unreadable): exit 1."""
