"""``aimi deployments``: deployments made at runtime, in the server's database (every replica
sharing it serves a change within AIMI_CONTROL_REFRESH_SECONDS, without dropping streams).

``create`` takes the fields of a ``[[deployments]]`` table, as flags or as ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from aimi.cli.control import actor, add_database, emit, fail, open_database, settings
from aimi.control import deployments
from aimi.deployments.config import ConfigError, load_config
from aimi.protocol.errors import ApiError

COLUMNS = ("name", "config", "expires_at", "updated_at", "created_by")


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("deployments", help="create, list and delete deployments at runtime")
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="the runtime deployments (the file's are in the file)")
    listing.add_argument("--format", choices=("table", "json"), default="table")
    create = actions.add_parser("create", help="create (or replace) a runtime deployment")
    create.add_argument("name")
    create.add_argument("--model", help="catalog name, .gguf path, model directory, pypi://...")
    create.add_argument("--engine", help="engine name (llamacpp, upstream, ...)")
    create.add_argument("--slots", type=int)
    create.add_argument("--context-size", type=int)
    create.add_argument("--engine-options", type=json.loads, metavar="JSON", help="engine options as JSON")
    create.add_argument(
        "--json",
        type=json.loads,
        dest="table",
        metavar="JSON",
        help="every field of the [[deployments]] table as a JSON object (flags win)",
    )
    create.add_argument("--expires-in-hours", type=float, help="remove it after this many hours (e.g. 168)")
    delete = actions.add_parser("delete", help="remove a runtime deployment (its requests finish first)")
    delete.add_argument("name")
    for sub in (listing, create, delete):
        add_database(sub)
    parser.set_defaults(run=run)


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = dict(args.table or {})
    for name in ("model", "engine", "slots", "context_size", "engine_options"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    if args.expires_in_hours is not None:
        fields[deployments.EXPIRES] = args.expires_in_hours
    return fields


def _in_the_file(name: str) -> bool:
    path = settings().config
    if path is None:
        return False
    try:
        return name in {d.name for d in load_config(path).deployments}
    except ConfigError:
        return False


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "create":
            if _in_the_file(args.name):
                return fail(
                    f"deployment {args.name!r} is declared by the deployments file, not at runtime; change it there"
                )
            entry, expires = deployments.check(args.name, _fields(args))
            deployments.build(settings(), entry, lambda line: print(line, file=sys.stderr))
    except ApiError as exc:
        return fail(exc.message)
    engine = open_database(args.database)
    try:
        if args.action == "list":
            emit(deployments.listing(engine), args.format, COLUMNS)
        elif args.action == "create":
            view, created = deployments.put(engine, entry, expires, actor())
            print(json.dumps(view, indent=2))
            print(f"aimi: deployment {args.name} {'created' if created else 'replaced'}", file=sys.stderr)
        else:
            deployments.delete(engine, args.name, actor())
            print(f"aimi: deployment {args.name} deleted")
        return 0
    except ApiError as exc:
        return fail(exc.message)
    finally:
        engine.dispose()
