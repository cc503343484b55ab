"""The control plane's tables (created by the ledger's migration 0002) and the time rules they share."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

metadata = sa.MetaData()

managed_keys = sa.Table(
    "managed_keys",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("previous_sha256", sa.String(64)),
    sa.Column("previous_expires_at", sa.DateTime(timezone=True)),
    sa.Column("scopes", sa.Text, nullable=False),  # JSON list
    sa.Column("deployments", sa.Text),  # JSON list; NULL: every deployment
    sa.Column("quota", sa.Text),  # JSON object of QuotaLimits
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True)),
    sa.Column("rotated_at", sa.DateTime(timezone=True)),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)

runtime_deployments = sa.Table(
    "runtime_deployments",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("config", sa.Text, nullable=False),  # JSON of a [[deployments]] table, without its name
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True)),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(200)),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("status", sa.Integer),
    sa.Column("client", sa.String(200)),
    sa.Column("request_id", sa.String(200)),
    sa.Column("detail", sa.Text),  # JSON; never a secret
)


def now() -> datetime:
    """The current time, in UTC, to the second (what the tables keep and the API shows)."""
    return datetime.now(UTC).replace(microsecond=0)


def utc(moment: datetime | None) -> datetime | None:
    """A time read back from the database, in UTC (SQLite gives it back without its zone)."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def iso(moment: datetime | None) -> str | None:
    """A time as the API and the CLI show it: ISO 8601 in UTC, ``Z``-suffixed."""
    moment = utc(moment)
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None
