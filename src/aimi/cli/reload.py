"""``aimi reload``: ask a running ``aimi serve --config`` to re-read its file (it gets a SIGHUP)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

from aimi.settings import Settings


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("reload", help="make a running aimi serve --config re-read its file")
    parser.add_argument("--pid-file", type=Path, help="default: aimi.pid in the state directory (AIMI_HOME)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    pid_file: Path = args.pid_file or Settings().home / "aimi.pid"
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as exc:
        print(f"aimi: cannot signal the server named in {pid_file}: {exc}", file=sys.stderr)
        return 1
    print(f"aimi: asked process {pid} to reload its deployments file")
    return 0
