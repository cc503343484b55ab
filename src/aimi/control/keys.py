"""Managed keys: issued, listed, rotated and revoked at runtime, kept in the database as SHA-256
digests (the secret is shown once, when it is made, and never stored).

Rotation gives a key a new secret and keeps the old one working for a grace period (default
``AIMI_KEY_ROTATION_GRACE_HOURS``, 24 h), like the primary/secondary pair of an Azure endpoint:
clients move to the new secret while the old one still works. Rotating again within the grace
period ends the older secret at once: a key has at most two secrets.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Connection, Engine

from aimi.auth.keys import ApiKey, Principal, digest, generate_key
from aimi.control.audit import Actor, Entry, record
from aimi.control.tables import iso, managed_keys, now, utc
from aimi.protocol.errors import ApiError
from aimi.quota.api import QuotaLimits

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
MAX_HOURS = 24 * 3650  # ten years: past it a duration is a typo, not a plan


class KeyRequest(BaseModel):
    """``POST /admin/keys``: a new key."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(pattern=NAME_PATTERN, description="The key's name: its id in logs and the ledger.")]
    deployments: Annotated[list[str], Field(min_length=1, max_length=256)] | None = Field(
        None, description="The deployments it may use (absent: every one)."
    )
    scopes: Annotated[list[Literal["inference", "metrics", "admin"]], Field(min_length=1)] = Field(
        ["inference"], description="What it may call."
    )
    quota: QuotaLimits | None = Field(None, description="Its own limits, on top of the deployments'.")
    expires_in_hours: Annotated[float, Field(gt=0, le=MAX_HOURS)] | None = Field(
        None, description="Hours until it stops working (absent: never)."
    )


class RotateRequest(BaseModel):
    """``POST /admin/keys/{name}/rotate``: a new secret for the key."""

    model_config = ConfigDict(extra="forbid")

    grace_hours: Annotated[float, Field(ge=0, le=MAX_HOURS)] | None = Field(
        None, description="Hours the old secret keeps working (absent: AIMI_KEY_ROTATION_GRACE_HOURS; 0: none)."
    )


def _state(row: Any, moment: datetime) -> str:
    if row["revoked_at"] is not None:
        return "revoked"
    expires = utc(row["expires_at"])
    return "expired" if expires is not None and expires <= moment else "active"


def view(row: Any, moment: datetime | None = None) -> dict[str, Any]:
    """A key as the API and the CLI show it: everything but its digests."""
    moment = moment or now()
    previous = utc(row["previous_expires_at"])
    return {
        "name": row["name"],
        "state": _state(row, moment),
        "scopes": json.loads(row["scopes"]),
        "deployments": json.loads(row["deployments"]) if row["deployments"] is not None else None,
        "quota": json.loads(row["quota"]) if row["quota"] is not None else None,
        "created_at": iso(row["created_at"]),
        "created_by": row["created_by"],
        "expires_at": iso(row["expires_at"]),
        "rotated_at": iso(row["rotated_at"]),
        "previous_secret_expires_at": iso(previous) if previous is not None and previous > moment else None,
        "revoked_at": iso(row["revoked_at"]),
    }


def _row(connection: Connection, name: str) -> Any:
    return connection.execute(sa.select(managed_keys).where(managed_keys.c.name == name)).mappings().first()


def _found(connection: Connection, name: str) -> Any:
    row = _row(connection, name)
    if row is None:
        raise ApiError("NotFound", f"there is no managed key named {name!r}")
    return row


def create(engine: Engine, request: KeyRequest, actor: Actor) -> tuple[dict[str, Any], str]:
    """Issue a key; returns its view and its secret (which nothing keeps)."""
    secret = generate_key()
    moment = now()
    expires = moment + timedelta(hours=request.expires_in_hours) if request.expires_in_hours is not None else None
    with engine.begin() as connection:
        existing = _row(connection, request.name)
        if existing is not None:
            revoked = " (revoked; names are not reused)" if existing["revoked_at"] is not None else ""
            raise ApiError("Conflict", f"a managed key named {request.name!r} exists{revoked}", param="name")
        values = {
            "name": request.name,
            "sha256": digest(secret).hex(),
            "scopes": json.dumps(sorted(set(request.scopes))),
            "deployments": json.dumps(sorted(set(request.deployments))) if request.deployments is not None else None,
            "quota": request.quota.model_dump_json(exclude_none=True) if request.quota is not None else None,
            "created_at": moment,
            "created_by": actor.name,
            "expires_at": expires,
        }
        connection.execute(managed_keys.insert().values(**values))
        detail = request.model_dump(exclude_none=True, exclude={"name"})
        record(connection, actor, Entry("keys.create", request.name, status=201, detail=detail))
        return view(_found(connection, request.name), moment), secret


def rotate(engine: Engine, name: str, grace_hours: float, actor: Actor) -> tuple[dict[str, Any], str]:
    """A new secret for ``name``; the old one works ``grace_hours`` more."""
    secret = generate_key()
    moment = now()
    with engine.begin() as connection:
        row = _found(connection, name)
        if _state(row, moment) != "active":
            raise ApiError("Conflict", f"the managed key {name!r} is {_state(row, moment)}; it cannot be rotated")
        previous = (row["sha256"], moment + timedelta(hours=grace_hours)) if grace_hours > 0 else (None, None)
        connection.execute(
            managed_keys.update()
            .where(managed_keys.c.name == name)
            .values(
                sha256=digest(secret).hex(),
                previous_sha256=previous[0],
                previous_expires_at=previous[1],
                rotated_at=moment,
            )
        )
        record(connection, actor, Entry("keys.rotate", name, status=200, detail={"grace_hours": grace_hours}))
        return view(_found(connection, name), moment), secret


def revoke(engine: Engine, name: str, actor: Actor) -> dict[str, Any]:
    """Refuse ``name`` from now on (both its secrets); its row stays, for the record."""
    moment = now()
    with engine.begin() as connection:
        row = _found(connection, name)
        if row["revoked_at"] is not None:
            raise ApiError("Conflict", f"the managed key {name!r} is already revoked")
        connection.execute(
            managed_keys.update()
            .where(managed_keys.c.name == name)
            .values(revoked_at=moment, previous_sha256=None, previous_expires_at=None)
        )
        record(connection, actor, Entry("keys.revoke", name, status=200))
        return view(_found(connection, name), moment)


def listing(engine: Engine) -> list[dict[str, Any]]:
    """Every managed key, revoked and expired ones included, by name."""
    moment = now()
    with engine.connect() as connection:
        rows = connection.execute(sa.select(managed_keys).order_by(managed_keys.c.name)).mappings().all()
    return [view(row, moment) for row in rows]


def get(engine: Engine, name: str) -> dict[str, Any]:
    with engine.connect() as connection:
        return view(_found(connection, name))


def active(connection: Connection) -> list[ApiKey]:
    """The digests the server accepts now: each live key's secret, and a rotated-out secret
    still in its grace period. Each carries its end, so it stops working on time between refreshes."""
    moment = now()
    query = sa.select(managed_keys).where(
        managed_keys.c.revoked_at.is_(None),
        sa.or_(managed_keys.c.expires_at.is_(None), managed_keys.c.expires_at > moment),
    )
    keys: list[ApiKey] = []
    for row in connection.execute(query).mappings():
        deployments = json.loads(row["deployments"]) if row["deployments"] is not None else None
        quota = QuotaLimits.model_validate_json(row["quota"]) if row["quota"] is not None else QuotaLimits()
        principal = Principal(
            row["name"],
            frozenset(deployments) if deployments is not None else None,
            quota,
            frozenset(json.loads(row["scopes"])),
        )
        expires = utc(row["expires_at"])
        end = expires.timestamp() if expires is not None else None
        keys.append(ApiKey(bytes.fromhex(row["sha256"]), principal, end))
        previous_end = utc(row["previous_expires_at"])
        if row["previous_sha256"] is not None and previous_end is not None and previous_end > moment:
            grace_end = previous_end.timestamp() if end is None else min(end, previous_end.timestamp())
            keys.append(ApiKey(bytes.fromhex(row["previous_sha256"]), principal, grace_end))
    return keys
