"""ContextForge's own Python environment: a Python >= 3.12 virtualenv in a per-user cache directory holding
the pinned ``mcp-contextforge-gateway`` (or an editable checkout of it), ``psycopg[binary]`` and this project.

``python -m harness contextforge setup`` builds it (:func:`build_env`); the rest of the harness asks
:func:`find_env` for it and gets either the environment or a :class:`~harness.errors.UsageError` whose one
line names the setup command. The environment is described by ``env.json`` beside its ``bin/``; a directory
without that file is a build that did not finish and is never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.errors import UsageError

DEFAULT_VERSION = "1.1.0"
PACKAGE = "mcp-contextforge-gateway"
MIN_PYTHON = (3, 12)
ENV_FILE = "env.json"
COMMON_PYTHONS = ("/usr/local/bin", "/usr/bin", "/opt/homebrew/bin", "/opt/local/bin")


class EnvError(RuntimeError):
    """The environment could not be built (the message says why in one line)."""


@dataclass(frozen=True)
class ContextForgeEnv:
    """A built environment: its directory, interpreter and what it holds."""

    path: str
    python: str
    version: str
    source: str | None
    base_python: str
    python_version: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def cache_root() -> Path:
    """``$XDG_CACHE_HOME`` (or ``~/.cache``) ``/mcp-cleanup-loadtest``; ``MCP_LOADTEST_CACHE`` overrides it."""
    explicit = os.environ.get("MCP_LOADTEST_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mcp-cleanup-loadtest"


def env_dir(version: str = DEFAULT_VERSION, source: str | Path | None = None) -> Path:
    """Where the environment for ``version`` (or for the checkout at ``source``) lives."""
    if source is not None:
        digest = hashlib.sha256(str(Path(source).resolve()).encode()).hexdigest()[:12]
        return cache_root() / f"contextforge-src-{digest}"
    return cache_root() / f"contextforge-{version}"


def setup_command(version: str = DEFAULT_VERSION, source: str | Path | None = None) -> str:
    """The command that builds the environment ``find_env`` looks for."""
    if source is not None:
        return f"python -m harness contextforge setup --source {source}"
    return "python -m harness contextforge setup" + ("" if version == DEFAULT_VERSION else f" --version {version}")


def _read_env(directory: Path) -> ContextForgeEnv | None:
    try:
        data = json.loads((directory / ENV_FILE).read_text(encoding="utf-8"))
        env = ContextForgeEnv(**data)
    except (OSError, ValueError, TypeError):
        return None
    return env if Path(env.python).exists() else None


def find_env(version: str = DEFAULT_VERSION, source: str | Path | None = None) -> ContextForgeEnv:
    """The built environment, or a ``UsageError`` naming the command that builds it."""
    env = _read_env(env_dir(version, source))
    if env is None:
        what = f"for the checkout {source}" if source is not None else f"for {PACKAGE}=={version}"
        raise UsageError(f"no ContextForge environment {what}: run `{setup_command(version, source)}` first")
    return env


# --- finding a Python >= 3.12 ------------------------------------------------------------------------
def python_version(executable: str | Path) -> tuple[int, int, int] | None:
    """``(major, minor, micro)`` of an interpreter that runs, else None (pyenv shims that do not, say)."""
    try:
        out = subprocess.run([str(executable), "-c", "import sys; print(*sys.version_info[:3])"],
                             capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = out.stdout.split()
    if out.returncode != 0 or len(parts) != 3:
        return None
    return int(parts[0]), int(parts[1]), int(parts[2])


def _pyenv_root() -> Path | None:
    exe = shutil.which("pyenv")
    if exe:
        try:
            out = subprocess.run([exe, "root"], capture_output=True, text=True, timeout=20, check=False)
            if out.returncode == 0 and out.stdout.strip():
                return Path(out.stdout.strip())
        except (OSError, subprocess.TimeoutExpired):
            pass
    env_root = os.environ.get("PYENV_ROOT")
    if env_root:
        return Path(env_root)
    default = Path.home() / ".pyenv"
    return default if default.is_dir() else None


def candidate_pythons() -> list[Path]:
    """Interpreters to try, in order: PATH, then pyenv's versions directory, then common locations."""
    names = [f"python3.{minor}" for minor in range(MIN_PYTHON[1], 20)] + ["python3", "python"]
    found: list[Path] = [Path(p) for p in (shutil.which(n) for n in names) if p]
    root = _pyenv_root()
    if root is not None:
        versions = sorted((root / "versions").glob("3.*"), key=lambda p: _numeric(p.name))
        found += [v / "bin" / "python3" for v in versions if (v / "bin" / "python3").exists()]
    for directory in COMMON_PYTHONS:
        found += sorted(Path(directory).glob("python3.1[2-9]"))
    unique: dict[str, Path] = {}
    for path in found:
        unique.setdefault(str(path), path)
    return list(unique.values())


def _numeric(name: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", name)[:3])


def find_python(explicit: str | None = None) -> tuple[Path, tuple[int, int, int]]:
    """A Python >= 3.12: ``explicit`` if given (it must qualify), else the first qualifying candidate."""
    wanted = ".".join(map(str, MIN_PYTHON))
    if explicit is not None:
        version = python_version(explicit)
        if version is None:
            raise UsageError(f"--python {explicit} does not run")
        if version[:2] < MIN_PYTHON:
            raise UsageError(f"--python {explicit} is Python {'.'.join(map(str, version))}; ContextForge needs "
                             f">= {wanted}")
        return Path(explicit), version
    for candidate in candidate_pythons():
        version = python_version(candidate)
        if version is not None and version[:2] >= MIN_PYTHON:
            return candidate, version
    raise EnvError(f"no Python >= {wanted} found on PATH, under pyenv or in {', '.join(COMMON_PYTHONS)}; "
                   "give one with --python PATH")


# --- building ----------------------------------------------------------------------------------------
def project_root() -> Path:
    """This project's checkout (installed editable into the environment)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        raise EnvError(f"this project is not installed from a checkout ({root} has no pyproject.toml)")
    return root


def _pip(python: Path, *args: str, log: Path) -> None:
    with log.open("a", encoding="utf-8") as handle:
        code = subprocess.run([str(python), "-m", "pip", "install", "--quiet", *args], stdout=handle,
                              stderr=subprocess.STDOUT, check=False).returncode
    if code != 0:
        tail = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines()
                if line.strip() and not line.startswith("WARNING: Location")][-1:]
        raise EnvError(f"pip install {' '.join(args)} failed (exit {code}): {' '.join(tail)} (log: {log})")


def installed_version(python: Path) -> str:
    """The ``mcp-contextforge-gateway`` version an environment's interpreter sees."""
    out = subprocess.run([str(python), "-c", f"from importlib.metadata import version; print(version({PACKAGE!r}))"],
                         capture_output=True, text=True, timeout=60, check=False)
    if out.returncode != 0:
        raise EnvError(f"{PACKAGE} is not importable in {python}")
    return out.stdout.strip()


def build_env(version: str = DEFAULT_VERSION, source: str | Path | None = None,
              python: str | None = None) -> tuple[ContextForgeEnv, bool]:
    """Build (or reuse) the environment; returns it and whether it was reused."""
    if source is not None and not (Path(source) / "pyproject.toml").is_file():
        raise UsageError(f"--source {source} is not a checkout of the gateway (no pyproject.toml)")
    target = env_dir(version, source)
    existing = _read_env(target)
    if existing is not None:
        return existing, True
    base, base_version = find_python(python)
    root = project_root()
    shutil.rmtree(target, ignore_errors=True)  # a build that did not finish (no env.json)
    target.parent.mkdir(parents=True, exist_ok=True)
    log = target.with_name(target.name + ".log")
    log.write_text("", encoding="utf-8")
    code = subprocess.run([str(base), "-m", "venv", str(target)], capture_output=True, text=True,
                          check=False).returncode
    if code != 0:
        raise EnvError(f"{base} -m venv {target} failed (exit {code})")
    venv_python = target / "bin" / "python"
    package = ["-e", str(Path(source).resolve())] if source is not None else [f"{PACKAGE}=={version}"]
    _pip(venv_python, *package, "psycopg[binary]", "-e", str(root), log=log)
    env = ContextForgeEnv(path=str(target), python=str(venv_python), version=installed_version(venv_python),
                          source=str(Path(source).resolve()) if source is not None else None,
                          base_python=str(base), python_version=".".join(map(str, base_version)))
    (target / ENV_FILE).write_text(json.dumps(env.as_dict(), indent=2) + "\n", encoding="utf-8")
    return env, False


def current_python_ok() -> bool:
    """Whether the running interpreter could host the registry itself (>= 3.12)."""
    return sys.version_info[:2] >= MIN_PYTHON
