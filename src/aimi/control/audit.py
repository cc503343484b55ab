"""The audit log: one row per admin action (who, what, on what, when, from where, and how it
ended). The row of a change is written in the change's own transaction, so a change is never
without its row; a refused action gets its row on its own. Secrets never reach it: ``detail``
holds the fields of a request with every secret left out by the caller."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from aimi.control.tables import audit_log, iso, now

MAX_ROWS = 1000


@dataclass(frozen=True)
class Actor:
    """Who acts: a key's name (or ``cli:<user>`` for the command line) and where from."""

    name: str
    client: str | None = None
    request_id: str | None = None


@dataclass
class Entry:
    """One action to record."""

    action: str
    target: str | None
    outcome: str = "ok"
    status: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def record(connection: Connection, actor: Actor, entry: Entry) -> None:
    """Add the row of ``entry`` within ``connection``'s transaction."""
    connection.execute(
        audit_log.insert().values(
            time=now(),
            actor=actor.name[:200],
            action=entry.action,
            target=entry.target[:200] if entry.target is not None else None,
            outcome=entry.outcome,
            status=entry.status,
            client=actor.client[:200] if actor.client is not None else None,
            request_id=actor.request_id[:200] if actor.request_id is not None else None,
            detail=json.dumps(entry.detail, sort_keys=True) if entry.detail else None,
        )
    )


def record_alone(engine: Engine, actor: Actor, entry: Entry) -> None:
    """Add the row of an action that changed nothing (refused, or failed before writing)."""
    with engine.begin() as connection:
        record(connection, actor, entry)


def read(
    engine: Engine,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The newest rows first, at most ``limit`` of them, filtered by time, actor, action and target."""
    query = sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(max(1, min(limit, MAX_ROWS)))
    if since is not None:
        query = query.where(audit_log.c.time >= since)
    if until is not None:
        query = query.where(audit_log.c.time < until)
    for column, value in ((audit_log.c.actor, actor), (audit_log.c.action, action), (audit_log.c.target, target)):
        if value is not None:
            query = query.where(column == value)
    with engine.connect() as connection:
        rows = connection.execute(query).mappings().all()
    return [
        {
            "id": row["id"],
            "time": iso(row["time"]),
            "actor": row["actor"],
            "action": row["action"],
            "target": row["target"],
            "outcome": row["outcome"],
            "status": row["status"],
            "client": row["client"],
            "request_id": row["request_id"],
            "detail": json.loads(row["detail"]) if row["detail"] else {},
        }
        for row in rows
    ]
