"""``aimi usage``: totals from the usage ledger by key, deployment and day, with their cost.

Reads the ledger the server writes (``AIMI_DATABASE_URL``, else SQLite in ``AIMI_HOME``) or the
one ``--database`` names. ``--by`` picks the grouping; ``--since``/``--until`` bound the time
(ISO 8601, UTC when no zone is given); ``--format`` is csv (default) or json.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

import sqlalchemy.exc
from pydantic import ValidationError

from aimi.settings import Settings
from aimi.usage import report, store


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("usage", help="usage totals by key, deployment and day, with cost")
    parser.add_argument(
        "--by",
        default="key,deployment,day",
        help=f"comma-separated grouping, from: {', '.join(report.GROUPS)} (default key,deployment,day)",
    )
    parser.add_argument("--since", help="from this date or time (ISO 8601)")
    parser.add_argument("--until", help="up to (not including) this date or time (ISO 8601)")
    parser.add_argument("--format", choices=("csv", "json"), default="csv", help="output format (default csv)")
    parser.add_argument("--database", help="the ledger's SQLAlchemy URL (default: the server's)")
    parser.set_defaults(run=run)


def when(value: str | None, name: str) -> datetime | None:
    """The moment an ISO 8601 ``--NAME`` option gives (UTC when it names no zone)."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise SystemExit(f"aimi: --{name} must be an ISO 8601 date or time, not {value!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def run(args: argparse.Namespace) -> int:
    by = list(dict.fromkeys(part.strip() for part in args.by.split(",") if part.strip()))
    unknown = [group for group in by if group not in report.GROUPS]
    if unknown:
        print(f"aimi: cannot group by {', '.join(unknown)}; choose from {', '.join(report.GROUPS)}", file=sys.stderr)
        return 1
    try:
        settings = Settings()
        url = args.database or store.ledger_url(settings.home, settings.database_url)
    except ValidationError as exc:
        print(f"aimi: invalid settings: {exc}", file=sys.stderr)
        return 1
    since, until = when(args.since, "since"), when(args.until, "until")
    try:
        engine = store.connect(url)
        store.migrate(engine)
        rows = report.totals(engine, by, since, until)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        print(
            f"aimi: cannot read the usage ledger: {exc.__class__.__name__}: {getattr(exc, 'orig', None) or exc}",
            file=sys.stderr,
        )
        return 1
    sys.stdout.write(report.render(rows, by, args.format))
    return 0
