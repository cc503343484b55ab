"""What the control-plane commands share: the database they open, who they act as, durations."""

from __future__ import annotations

import getpass
import json
import re
import socket
import sys
from typing import Any

import sqlalchemy.exc
from pydantic import ValidationError
from sqlalchemy.engine import Engine

from aimi.control.audit import Actor
from aimi.settings import Settings
from aimi.usage import store

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_HOURS = {"s": 1 / 3600, "m": 1 / 60, "h": 1.0, "": 1.0, "d": 24.0, "w": 168.0}


def hours(text: str) -> float:
    """A duration such as ``90m``, ``12h``, ``7d`` or ``2w`` (a bare number: hours), in hours."""
    match = _DURATION.match(text)
    if match is None:
        raise SystemExit(f"aimi: {text!r} is not a duration; write e.g. 90m, 12h, 7d or 2w")
    return float(match.group(1)) * _HOURS[match.group(2)]


def add_database(parser: Any) -> None:
    parser.add_argument(
        "--database",
        help="the server's database (SQLAlchemy URL; default: AIMI_DATABASE_URL, else the SQLite file in AIMI_HOME)",
    )


def settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise SystemExit(f"aimi: invalid settings: {exc}") from None


def open_database(url: str | None) -> Engine:
    """The server's database, its schema brought up to date."""
    resolved = settings()
    engine = store.connect(url or store.ledger_url(resolved.home, resolved.database_url))
    try:
        store.migrate(engine)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise SystemExit(f"aimi: cannot open the database: {getattr(exc, 'orig', None) or exc}") from None
    return engine


def actor() -> Actor:
    """Who the command line acts as, in the audit log."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Actor(f"cli:{user}", socket.gethostname())


def emit(value: Any, fmt: str, columns: tuple[str, ...]) -> None:
    """``value`` (a list of rows) as JSON or as a table of ``columns``."""
    if fmt == "json":
        print(json.dumps(value, indent=2))
        return
    rows = [[_cell(row.get(c)) for c in columns] for row in value]
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def fail(message: str) -> int:
    print(f"aimi: {message}", file=sys.stderr)
    return 1
