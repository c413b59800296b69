"""Shared fixtures: one embedded Postgres server per test session, a fresh database per test."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import psycopg
import pytest
from sqlalchemy.engine import make_url

from harness.sut.gateway_proc import GatewayProcess
from harness.sut.postgres import EmbeddedPostgres


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres]:
    """The embedded Postgres server, started by the project's own provider."""
    server = EmbeddedPostgres(max_connections=300)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_url(pg_server: EmbeddedPostgres) -> str:
    return pg_server.url


@pytest.fixture
def db_url(pg_url: str) -> Iterator[str]:
    """A new, empty database on the shared server; dropped after the test."""
    name = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def start_gateway(db_url: str) -> Iterator[Callable[..., GatewayProcess]]:
    """Start gateway processes on the test's database: ``start_gateway("--cleanup-interval", "1")``."""
    started: list[GatewayProcess] = []

    def start(*args: str, db: str | None = None, worker_id: str = "0") -> GatewayProcess:
        proc = GatewayProcess(db or db_url, args, worker_id=worker_id)
        proc.start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
