"""The ``aimi`` command: serve, chat, config, models, reload, usage, keys, deployments and audit."""

from __future__ import annotations

import argparse
import sys

from aimi.cli import audit, chat, config, deployments, keys, models, reload, serve, usage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aimi", description="Self-hosted inference server for open models.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve.add_parser(commands)
    chat.add_parser(commands)
    config.add_parser(commands)
    models.add_parser(commands)
    reload.add_parser(commands)
    usage.add_parser(commands)
    keys.add_parser(commands)
    deployments.add_parser(commands)
    audit.add_parser(commands)
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
