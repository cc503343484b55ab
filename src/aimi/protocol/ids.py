"""Identifiers for requests, answers and tool calls: 128 random bits as 32 hex digits.

They name things, they guard nothing, so they come from :mod:`random` (seeded from the system's
entropy, and again in a forked child) rather than a system call per id, as ``uuid.uuid4`` makes.
Nothing secret is ever made from them."""

from __future__ import annotations

import random

_bits = random.getrandbits


def new_id() -> str:
    """A fresh identifier: 32 lowercase hex digits."""
    return f"{_bits(128):032x}"
