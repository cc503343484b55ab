"""``aimi config check FILE``: validate a deployments file without starting anything."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from aimi.deployments.build import check
from aimi.deployments.config import ConfigError, load_config
from aimi.settings import Settings


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("config", help="work with deployments files")
    actions = parser.add_subparsers(dest="action", required=True)
    checker = actions.add_parser("check", help="validate a deployments file without starting")
    checker.add_argument("file", type=Path)
    checker.set_defaults(run=run_check)


def run_check(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(f"aimi: {exc}", file=sys.stderr)
        return 2
    for line in check(Settings(), config, args.file):
        print(line)
    print(f"{args.file}: {len(config.deployments)} deployment(s), valid")
    return 0
