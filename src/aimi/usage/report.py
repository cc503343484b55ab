"""Totals from the ledger: requests, tokens and cost by key, deployment and day."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from aimi.usage.store import usage_records

GROUPS = ("key", "deployment", "day", "model", "surface", "outcome")
FIELDS = ("requests", "prompt_tokens", "completion_tokens", "total_tokens", "cost")


def _utc(moment: datetime, engine: Engine) -> datetime:
    """The instant in UTC (a naive time is taken as UTC); naive for SQLite, which keeps no zone."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.replace(tzinfo=None) if engine.dialect.name == "sqlite" else moment


def totals(
    engine: Engine,
    by: Sequence[str] = ("key", "deployment", "day"),
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    """One row per group, in group order."""
    unknown = [g for g in by if g not in GROUPS]
    if unknown:
        raise ValueError(f"cannot group by {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    table = usage_records.c
    columns: list[Any] = []
    for group in by:
        if group == "day":
            day = (
                sa.func.date(table.time)
                if engine.dialect.name == "sqlite"
                else sa.func.to_char(sa.func.timezone("UTC", table.time), "YYYY-MM-DD")
            )
            columns.append(day.label("day"))
        else:
            columns.append(getattr(table, group).label(group))
    query = sa.select(
        *columns,
        sa.func.count().label("requests"),
        sa.func.coalesce(sa.func.sum(table.prompt_tokens), 0).label("prompt_tokens"),
        sa.func.coalesce(sa.func.sum(table.completion_tokens), 0).label("completion_tokens"),
        sa.func.sum(table.cost).label("cost"),
    )
    if since is not None:
        query = query.where(table.time >= _utc(since, engine))
    if until is not None:
        query = query.where(table.time < _utc(until, engine))
    if columns:
        query = query.group_by(*columns).order_by(*columns)
    with engine.connect() as connection:
        rows = connection.execute(query).mappings().all()
    result = []
    for row in rows:
        item = {group: row[group] for group in by}
        item["requests"] = int(row["requests"])
        item["prompt_tokens"] = int(row["prompt_tokens"])
        item["completion_tokens"] = int(row["completion_tokens"])
        item["total_tokens"] = item["prompt_tokens"] + item["completion_tokens"]
        item["cost"] = None if row["cost"] is None else round(float(row["cost"]), 6)
        if "day" in item and item["day"] is not None:
            item["day"] = str(item["day"])
        result.append(item)
    return result


def render(rows: Sequence[dict[str, Any]], by: Sequence[str], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(list(rows), indent=2) + "\n"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[*by, *FIELDS], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return out.getvalue()
