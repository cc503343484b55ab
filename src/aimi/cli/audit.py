"""``aimi audit``: the audit log, newest first: who did what to which key or deployment, when,
from where, and how it ended."""

from __future__ import annotations

import argparse
from typing import Any

from aimi.cli.control import add_database, emit, open_database
from aimi.cli.usage import when
from aimi.control import audit

COLUMNS = ("time", "actor", "action", "target", "outcome", "status", "client")


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("audit", help="the audit log of admin actions")
    parser.add_argument("--since", help="from this date or time (ISO 8601, UTC unless a zone is given)")
    parser.add_argument("--until", help="up to (not including) this date or time")
    parser.add_argument("--actor", help="only this actor (a key's name, or cli:<user>)")
    parser.add_argument("--action", help="only this action (keys.create, deployments.delete, ...)")
    parser.add_argument("--target", help="only actions on this key or deployment")
    parser.add_argument(
        "--limit", type=int, default=100, help=f"at most this many rows (default 100, up to {audit.MAX_ROWS})"
    )
    parser.add_argument("--format", choices=("table", "json"), default="table")
    add_database(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    engine = open_database(args.database)
    try:
        rows = audit.read(
            engine,
            since=when(args.since, "since"),
            until=when(args.until, "until"),
            actor=args.actor,
            action=args.action,
            target=args.target,
            limit=args.limit,
        )
    finally:
        engine.dispose()
    emit(rows, args.format, COLUMNS)
    return 0
