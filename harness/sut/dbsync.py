"""Short synchronous database sessions for the harness (schema, knobs, sampling, leak checks)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from gateway_sim.store import driver_url


@contextmanager
def sync_session(url: str, application_name: str = "mcp-loadtest-harness") -> Iterator[Session]:
    """A session on its own unpooled connection, closed on exit."""
    engine = create_engine(driver_url(url, "thread"), poolclass=NullPool,
                           connect_args={"application_name": application_name, "connect_timeout": 10})
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()
