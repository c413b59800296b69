"""The settings table: one row per knob, and every flag, forwarded argv and config key derived from it."""

from __future__ import annotations

import argparse
import urllib.error
import urllib.request
from dataclasses import fields
from typing import Any

import pytest

from gateway_sim import cli as gateway_cli
from gateway_sim.admin_client import AdminClient
from gateway_sim.config import GatewayConfig, RegistryConfig, StoreConfig
from gateway_sim.settings import GATEWAY_SETTINGS, Setting, gateway_argv, table
from harness import settings
from harness.cli import build_parser, main
from harness.commands.run import config_from_args
from harness.scenario.run import Run

COMMAND_ONLY = {"help", "fault", "log_level", "specs", "action", "latency_ms", "jitter_ms", "error_rate",
                "proxy_url"}
"""Arguments that are not knobs: the command's own verbs and positional values."""


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", ["run", "up", "soak", "bench", "sweep", "model"])
def test_every_flag_of_a_command_is_a_row_of_the_table(command: str) -> None:
    parser = _subparsers()[command]
    for action in parser._actions:
        if not action.option_strings or action.dest in COMMAND_ONLY:
            continue
        row = settings.SETTINGS.get(action.dest)
        assert row is not None, f"{command} {action.option_strings} is not in the settings table"
        assert row.flag in action.option_strings, (command, action.option_strings, row.flag)


def test_every_flag_of_the_gateway_is_a_row_of_the_table() -> None:
    for action in gateway_cli.build_parser()._actions:
        if action.option_strings and action.dest not in COMMAND_ONLY:
            assert action.dest in settings.SETTINGS and settings.SETTINGS[action.dest].part in ("store", "registry",
                                                                                                 "gateway")


def test_config_dataclasses_are_the_gateway_rows() -> None:
    for config, part in ((StoreConfig, "store"), (RegistryConfig, "registry"), (GatewayConfig, "gateway")):
        names = {f.name for f in fields(config)} - {"store", "registry"}
        assert names == {r.name for r in GATEWAY_SETTINGS if r.part == part}, config.__name__
    defaults = GatewayConfig(store=StoreConfig())
    for row in GATEWAY_SETTINGS:
        holder = {"store": defaults.store, "registry": defaults.registry, "gateway": defaults}[row.part]
        assert getattr(holder, row.name) == row.default_value(), row.name


def test_a_knob_declared_twice_is_refused() -> None:
    row = Setting("pool_size", "store", int, 1, "again")
    with pytest.raises(ValueError, match="declared twice"):
        table((*GATEWAY_SETTINGS, row))


def test_bounds_name_the_flag() -> None:
    with pytest.raises(ValueError, match=r"^--pool-size must be >= 1$"):
        StoreConfig(pool_size=0)
    with pytest.raises(ValueError, match=r"^--strategy must be one of"):
        RegistryConfig(strategy="fast")
    with pytest.raises(ValueError, match="--abrupt-ratio must be <= 1"):
        settings.check({"abrupt_ratio": 1.5})


def test_defaults_agree_and_old_spellings_still_work() -> None:
    commands = _subparsers()
    bench = commands["bench"].parse_args(["--max-point-seconds", "7"])
    sweep = commands["sweep"].parse_args(["--max-seconds", "8"])
    assert bench.max_point_seconds == 7 and sweep.max_point_seconds == 8
    run = commands["run"].parse_args([])
    assert run.abrupt_ratio == settings.SETTINGS["abrupt_ratio"].default  # the locustfile uses the same row
    assert commands["soak"].parse_args(["--duration", "90s"]).run_time == 90.0


def _other_value(row: Setting) -> Any:
    """A valid value that differs from the row's default."""
    default = row.default_value()
    if row.switch:
        return not default
    if row.choices:
        return next(c for c in row.choices if c != default)
    if row.name == "auth_token":
        return "table-walk-token"
    if row.name == "malloc_mmap_threshold":
        return 2 * default
    if row.name == "registry_name":
        return "tests.test_registry_plugin:create"
    if row.type is int:
        return default + 1
    if row.type is float:
        return default / 2
    raise AssertionError(f"no test value for {row.name}")


FORWARDED = [r for r in GATEWAY_SETTINGS if r.forward]


def test_forwarded_argv_covers_every_forwarded_row() -> None:
    values = {r.name: _other_value(r) for r in FORWARDED}
    argv = gateway_argv(values)
    parsed = gateway_cli.build_parser().parse_args(["--db-url", "postgresql://x@127.0.0.1/db", *argv])
    for row in FORWARDED:
        assert getattr(parsed, row.name) == values[row.name], row.name


def test_every_gateway_knob_given_to_harness_run_reaches_the_gateway(tmp_path) -> None:
    """Walk the table: give ``harness run`` a non-default value for every forwarded gateway knob, start the stack
    the run would start, and read the knobs back from the gateway's /admin/cycles. (The registry's own knob picks
    the implementation behind the rest: tests/test_registry_plugin.py and test_contextforge.py walk it.)"""
    forwarded = [r for r in GATEWAY_SETTINGS if r.forward and r.name != "registry_name"]
    values = {r.name: _other_value(r) for r in forwarded}
    values["cleanup_interval"] = 0.5  # keep the gateway quick to start and stop
    argv = ["run", "--out", str(tmp_path / "out"), "--no-progress"]
    for row in forwarded:
        if row.switch:
            argv += [row.flag] if values[row.name] != row.default_value() else []
        else:
            argv += [row.flag, str(values[row.name])]
    args = build_parser().parse_args(argv)
    run = Run(config_from_args(args))
    run.stack.start()
    try:
        url = run.stack.gateway_urls[0]
        reported = AdminClient(url).config()
        for row in forwarded:
            if row.reported:
                assert reported[row.name] == values[row.name], row.name
        request = urllib.request.Request(f"{url}/mcp", data=b"{}", method="POST",
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:  # the token reached the gateway too
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 401
    finally:
        run.stack.stop()


def test_bad_knob_is_one_line_and_exit_2(tmp_path, capsys) -> None:
    assert main(["run", "--pool-size", "0", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "harness run: error: --pool-size must be >= 1" and not (tmp_path / "x").exists()


def test_an_internal_error_is_exit_1_with_the_traceback(monkeypatch, capsys, caplog) -> None:
    from harness.commands import model

    def broken(args: argparse.Namespace) -> int:
        raise ValueError("a bug, not bad input")

    monkeypatch.setattr(model, "run", broken)
    assert main(["model", "--sessions", "10", "--db-latency-ms", "1"]) == 1
    assert "internal error" in capsys.readouterr().err
    [record] = [r for r in caplog.records if r.name == "harness"]
    assert record.exc_info is not None and "a bug, not bad input" in caplog.text  # the traceback is in the log
