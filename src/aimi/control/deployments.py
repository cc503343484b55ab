"""Deployments made at runtime: the fields of a ``[[deployments]]`` table, checked by the same
rules, kept in the database and served beside the file's.

A deployment may be temporary (``expires_in_hours``, as Azure's endpoints "deleted in 168
hours"): it is listed with its ``expires_at`` until then, and the first replica to refresh after
it removes the row (and audits that). The file's deployments stay declarative: a runtime
deployment cannot take one's name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Connection, Engine

from aimi.control.audit import Actor, Entry, record
from aimi.control.keys import MAX_HOURS
from aimi.control.tables import iso, now, runtime_deployments, utc
from aimi.deployments.build import DeploymentSpec, from_config
from aimi.deployments.config import ConfigError, DeploymentConfig, FileConfig, validate_config
from aimi.deployments.sources import ModelSourceError
from aimi.engines import engine_options
from aimi.protocol.errors import ApiError, invalid_request
from aimi.settings import Settings

EXPIRES = "expires_in_hours"
_PLACE = re.compile(r"^(: )?deployments\[0\] \([^)]*\)\.?")


def check(name: str, body: Mapping[str, Any]) -> tuple[DeploymentConfig, float | None]:
    """The deployment ``body`` describes and its lifetime in hours (None: for good), or a 400
    naming the first field that breaks its rule."""
    fields = dict(body)
    hours = fields.pop(EXPIRES, None)
    if hours is not None and (
        isinstance(hours, bool) or not isinstance(hours, int | float) or not 0 < hours <= MAX_HOURS
    ):
        raise invalid_request(f"{EXPIRES} must be a number of hours above 0 and at most {MAX_HOURS}", EXPIRES)
    if fields.setdefault("name", name) != name:
        raise invalid_request(f"name must be the path's deployment name {name!r} (or absent)", "name")
    try:
        entry = DeploymentConfig.model_validate(fields)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        param = ".".join(str(part) for part in error["loc"]) or "body"
        what = "is required" if error["type"] == "missing" else error["msg"]
        raise invalid_request(f"{param}: {what}", param) from None
    try:
        validate_config({"deployments": [fields]}, "")
    except ConfigError as exc:
        message = _PLACE.sub("", str(exc))
        raise invalid_request(message, re.split(r"[: ]", message, maxsplit=1)[0]) from None
    return entry, float(hours) if hours is not None else None


def build(settings: Settings, entry: DeploymentConfig, status: Callable[[str], None]) -> DeploymentSpec:
    """The spec of a runtime deployment, its model fetched into the cache first (so a PUT of a
    model that cannot be had is a 400, before anything is written)."""
    try:
        spec = from_config(settings, FileConfig(deployments=[entry]), status)[0]
    except ModelSourceError as exc:
        raise invalid_request(f"model: {exc}", "model") from None
    except ConfigError as exc:
        message = _PLACE.sub("", str(exc))
        raise invalid_request(message, re.split(r"[: ]", message, maxsplit=1)[0]) from None
    try:
        # What the engine itself would refuse when built, refused now, before anything is written.
        engine_options(spec.engine).parse(spec.engine_config.options)
    except (ValueError, ImportError, AttributeError) as exc:
        raise invalid_request(f"engine_options: {exc}", "engine_options") from None
    return spec


def _config(entry: DeploymentConfig) -> str:
    return json.dumps(entry.model_dump(mode="json", exclude_defaults=True, exclude={"name"}), sort_keys=True)


def put(engine: Engine, entry: DeploymentConfig, hours: float | None, actor: Actor) -> tuple[dict[str, Any], bool]:
    """Create or replace the runtime deployment ``entry``; returns its view and whether it is new."""
    moment = now()
    expires = moment + timedelta(hours=hours) if hours is not None else None
    with engine.begin() as connection:
        existing = _row(connection, entry.name)
        config = _config(entry)
        values = {"config": config, "updated_at": moment, "expires_at": expires}
        table = runtime_deployments
        if existing is None:
            connection.execute(
                table.insert().values(name=entry.name, created_at=moment, created_by=actor.name, **values)
            )
        else:
            connection.execute(table.update().where(table.c.name == entry.name).values(**values))
        detail: dict[str, Any] = {"config": json.loads(config)}
        if hours is not None:
            detail[EXPIRES] = hours
        action = "deployments.create" if existing is None else "deployments.update"
        record(connection, actor, Entry(action, entry.name, status=201 if existing is None else 200, detail=detail))
        return view(_row(connection, entry.name)), existing is None


def delete(engine: Engine, name: str, actor: Actor) -> None:
    with engine.begin() as connection:
        table = runtime_deployments
        if connection.execute(table.delete().where(table.c.name == name)).rowcount == 0:
            raise ApiError("NotFound", f"there is no runtime deployment named {name!r}")
        record(connection, actor, Entry("deployments.delete", name, status=204))


def view(row: Any) -> dict[str, Any]:
    """A runtime deployment as the API and the CLI show it."""
    return {
        "name": row["name"],
        "source": "runtime",
        "config": json.loads(row["config"]),
        "created_at": iso(row["created_at"]),
        "created_by": row["created_by"],
        "updated_at": iso(row["updated_at"]),
        "expires_at": iso(row["expires_at"]),
    }


def _row(connection: Connection, name: str) -> Any:
    table = runtime_deployments
    return connection.execute(sa.select(table).where(table.c.name == name)).mappings().first()


def expire(connection: Connection) -> list[str]:
    """Remove the deployments whose time is up, each with its audit row; the names removed. Several
    replicas may race here: each row is removed (and audited) by exactly one of them."""
    moment = now()
    table = runtime_deployments
    due = connection.execute(sa.select(table.c.name).where(table.c.expires_at <= moment)).scalars().all()
    removed = []
    for name in due:
        gone = connection.execute(table.delete().where(table.c.name == name, table.c.expires_at <= moment))
        if gone.rowcount == 1:
            record(connection, Actor("aimi"), Entry("deployments.expire", name))
            removed.append(name)
    return removed


def live(connection: Connection) -> list[dict[str, Any]]:
    """The runtime deployments served now (those not yet expired), by name."""
    moment = now()
    table = runtime_deployments
    query = sa.select(table).order_by(table.c.name)
    rows = connection.execute(query).mappings().all()
    return [view(row) for row in rows if (utc(row["expires_at"]) or moment + timedelta(days=1)) > moment]


def listing(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return live(connection)
