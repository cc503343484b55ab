"""The ledger's table, on SQLite (the default, a file in AIMI_HOME) or PostgreSQL (by URL),
through SQLAlchemy; its schema is kept by Alembic migrations that run at start."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from importlib import resources
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from aimi.usage.records import UsageRecord

metadata = sa.MetaData()

usage_records = sa.Table(
    "usage_records",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("time", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("key", sa.String(200), index=True),
    sa.Column("deployment", sa.String(200), index=True),
    sa.Column("model", sa.String(200)),
    sa.Column("surface", sa.String(16), nullable=False),
    sa.Column("route", sa.String(32), nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("prompt_tokens", sa.Integer, nullable=False),
    sa.Column("completion_tokens", sa.Integer, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("ttft_ms", sa.Float),
    sa.Column("cost", sa.Float),
)


def database_url(url: str) -> str:
    """SQLAlchemy's URL for ``url``: plain ``postgresql://`` URLs use psycopg 3."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def connect(url: str) -> Engine:
    url = database_url(url)
    # A database that does not answer must not hold the writer (or `aimi usage`) for minutes.
    connect_args = {"connect_timeout": 5} if url.startswith("postgresql") else {}
    engine = sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    if engine.dialect.name == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _pragmas(connection: Any, _record: Any) -> None:
            # Several aimi processes (and `aimi usage`) may share the file.
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.close()

    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("aimi.usage") / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def insert(engine: Engine, records: Sequence[UsageRecord]) -> None:
    """Write ``records`` in one transaction; a record already written (a retried batch) is skipped."""
    rows = [dataclasses.asdict(record) for record in records]
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert  # type: ignore[assignment]
    with engine.begin() as connection:
        connection.execute(dialect_insert(usage_records).on_conflict_do_nothing(index_elements=["id"]), rows)
