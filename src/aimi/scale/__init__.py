"""aimi past one machine, on Ray Serve: the gateway as the ingress deployment and one engine pool
per deployment (see :mod:`aimi.scale.app`). Importing this package does not import Ray."""

from __future__ import annotations

from typing import Any


def build(args: dict[str, str]) -> Any:
    """Ray's application builder: ``serve run aimi.scale:build config=aimi.toml``."""
    from aimi.scale.app import build as build_app

    return build_app(args)
