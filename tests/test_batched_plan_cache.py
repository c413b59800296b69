"""``benchmarks/batched_plan_cache.py`` on its own embedded Postgres: the rounds and the plan counts of each side."""

import ast
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "batched_plan_cache.py"


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=240,
                          check=False)


def test_rounds_and_plan_counts_of_both_sides() -> None:
    done = run_script("--sessions", "1000", "--rounds", "2")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    rounds = [line.split() for line in lines if line.strip()[:1].isdigit()]
    assert [r[0] for r in rounds] == ["1", "2"]
    assert all(float(value) > 0 for r in rounds for value in r[1:])
    counts = {line.split(" connections")[0]: ast.literal_eval(line.split("plans: ")[1])
              for line in lines if "plans: " in line}
    assert set(counts) == {"calibration", "registry"}
    # the registry's connections ran the batched UPDATE at least once a round (two chunks of 500)
    assert sum(g + c for g, c in counts["registry"]) >= 2
    # the calibration's warm-up runs full chunks, so its connections settle on the plan the registry's keep
    for side in ("calibration", "registry"):
        assert any(generic > 0 for generic, _ in counts[side]), (side, counts)


def test_plan_cache_mode_applies_to_the_whole_server() -> None:
    done = run_script("--sessions", "1000", "--rounds", "2", "--plan-cache-mode", "force_custom_plan")
    assert done.returncode == 0, done.stderr
    counts = [ast.literal_eval(line.split("plans: ")[1]) for line in done.stdout.splitlines() if "plans: " in line]
    assert counts and all(generic == 0 and custom > 0 for side in counts for generic, custom in side)


def test_bad_input_is_one_line_and_exit_2() -> None:
    done = run_script("--sessions", "0")
    assert done.returncode == 2
    assert "--sessions must be in" in done.stderr
    assert "Traceback" not in done.stderr
