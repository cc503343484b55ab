"""``aimi keys``: managed keys, in the server's database (every replica sharing it picks a change
up within AIMI_CONTROL_REFRESH_SECONDS).

``create`` and ``rotate`` print the secret once, as the last line of stdout; nothing keeps it.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from pydantic import ValidationError

from aimi.cli.control import actor, add_database, emit, fail, hours, open_database, settings
from aimi.control import keys
from aimi.protocol.errors import ApiError

COLUMNS = ("name", "state", "scopes", "deployments", "expires_at", "rotated_at", "previous_secret_expires_at")


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("keys", help="issue, list, rotate and revoke managed keys")
    actions = parser.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="issue a key; prints its secret once")
    create.add_argument("--name", required=True, help="the key's name (its id in logs and the ledger)")
    create.add_argument(
        "--deployment",
        action="append",
        dest="deployments",
        metavar="D",
        help="a deployment it may use; repeatable (default: every one)",
    )
    create.add_argument(
        "--scope",
        action="append",
        dest="scopes",
        choices=("inference", "metrics", "admin"),
        help="what it may call; repeatable (default: inference)",
    )
    create.add_argument("--expires-in", metavar="DURATION", help="when it stops working: 90m, 12h, 30d, 2w")
    create.add_argument("--requests-per-minute", type=int, help="its own request limit")
    create.add_argument("--tokens-per-minute", type=int, help="its own token limit")
    create.add_argument("--max-concurrent", type=int, help="its own concurrency limit")
    listing = actions.add_parser("list", help="every managed key (no secrets)")
    listing.add_argument("--format", choices=("table", "json"), default="table")
    revoke = actions.add_parser("revoke", help="refuse a key from now on")
    revoke.add_argument("name")
    rotate = actions.add_parser("rotate", help="a new secret; the old one works for a grace period")
    rotate.add_argument("name")
    rotate.add_argument(
        "--grace",
        metavar="DURATION",
        help="how long the old secret keeps working (default AIMI_KEY_ROTATION_GRACE_HOURS; 0: none)",
    )
    for sub in (create, listing, revoke, rotate):
        add_database(sub)
    parser.set_defaults(run=run)


def _request(args: argparse.Namespace) -> keys.KeyRequest:
    quota = {
        name: getattr(args, name)
        for name in ("requests_per_minute", "tokens_per_minute", "max_concurrent")
        if getattr(args, name) is not None
    }
    fields: dict[str, Any] = {"name": args.name, "deployments": args.deployments, "quota": quota or None}
    if args.scopes:
        fields["scopes"] = args.scopes
    if args.expires_in is not None:
        fields["expires_in_hours"] = hours(args.expires_in)
    return keys.KeyRequest.model_validate(fields)


def run(args: argparse.Namespace) -> int:
    try:
        wanted = _request(args) if args.action == "create" else None
    except ValidationError as exc:
        return fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    engine = open_database(args.database)
    try:
        if args.action == "list":
            emit(keys.listing(engine), args.format, COLUMNS)
            return 0
        if args.action == "revoke":
            keys.revoke(engine, args.name, actor())
            print(f"aimi: key {args.name} revoked")
            return 0
        if wanted is not None:
            view, secret = keys.create(engine, wanted, actor())
            print(json.dumps(view, indent=2))
        else:
            grace = hours(args.grace) if args.grace is not None else settings().key_rotation_grace_hours
            view, secret = keys.rotate(engine, args.name, grace, actor())
            print(json.dumps(view, indent=2))
        print(secret)
        return 0
    except ApiError as exc:
        return fail(exc.message)
    finally:
        engine.dispose()
