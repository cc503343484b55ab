"""The ledger's table, on SQLite (the default, a file in AIMI_HOME) or PostgreSQL (by URL),
through SQLAlchemy; its schema is kept by Alembic migrations that run at start."""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
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


_FIELDS = tuple(field.name for field in dataclasses.fields(UsageRecord))


def insert(engine: Engine, records: Sequence[UsageRecord]) -> None:
    """Write ``records`` in one transaction; a record already written (a retried batch) is skipped."""
    names = _FIELDS
    rows = [{name: getattr(record, name) for name in names} for record in records]
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert  # type: ignore[assignment]
    with engine.begin() as connection:
        connection.execute(dialect_insert(usage_records).on_conflict_do_nothing(index_elements=["id"]), rows)


def ledger_url(home: Path, database_url: str | None) -> str:
    """The ledger's database: ``database_url``, else the SQLite file in the state directory."""
    return database_url or f"sqlite:///{home / 'usage.db'}"


class LedgerStore:
    """The ledger's database: its schema is brought up to date at start-up (and again on a write,
    if the database was unreachable then), and records are inserted in batches."""

    def __init__(self, url: str) -> None:
        self.engine = connect(url)
        self._migrated = False
        self._migrating = threading.Lock()  # start-up and the control plane's first refresh may both ask

    @classmethod
    def open(cls, home: Path, database_url: str | None) -> LedgerStore:
        """The store of a server's settings; the default SQLite file is its owner's alone."""
        home.mkdir(parents=True, exist_ok=True)
        if database_url is None:
            # Like the key file beside it (SQLite gives its -wal and -shm files the same mode).
            os.close(os.open(home / "usage.db", os.O_WRONLY | os.O_CREAT, 0o600))
        return cls(ledger_url(home, database_url))

    def ensure(self) -> None:
        """Migrate the schema once; raises while the database is unreachable."""
        with self._migrating:
            if not self._migrated:
                migrate(self.engine)
                self._migrated = True

    def write(self, records: Sequence[UsageRecord]) -> None:
        self.ensure()
        insert(self.engine, records)

    def close(self) -> None:
        self.engine.dispose()
