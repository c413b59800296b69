"""Argument parsing and exit codes of the sub-commands."""
