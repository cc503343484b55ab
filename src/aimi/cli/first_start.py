"""What ``aimi serve`` says while it starts: each model's loading progress (size, elapsed, done),
and, when the one model of a single-model serve cannot load, the fix, before it exits non-zero
(a server that answers 503 forever helps nobody)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from aimi.deployments.registry import Deployment

PROGRESS_EVERY = 5.0
"""Seconds between two "still loading" lines."""

_TORCH_CPU = "pip install torch --index-url https://download.pytorch.org/whl/cpu"
FIXES: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("No module named 'torch'", "No module named 'sentence_transformers'", "No module named 'transformers'"),
        "install the embeddings extra: pip install 'aimi[embeddings]' "
        f"(on a machine without a GPU, first the CPU build of torch: {_TORCH_CPU})",
    ),
    (("No module named 'PIL'",), "install the embeddings extra: pip install 'aimi[embeddings]'"),
    (("No module named 'xllamacpp'",), "reinstall aimi (pip install --force-reinstall aimi): llama.cpp comes with it"),
)


def fix_for(failure: str) -> str | None:
    """What to do about a model that failed to load with ``failure``, when aimi knows."""
    return next((fix for needles, fix in FIXES if any(n in failure for n in needles)), None)


def size_of(path: str | None) -> str:
    """A model's size on disk for a progress line ("93 MB"), or "" when unknown."""
    if not path:
        return ""
    target = Path(path)
    try:
        files = [target] if target.is_file() else [p for p in target.rglob("*") if p.is_file()]
        total = sum(p.stat().st_size for p in files)
    except OSError:
        return ""
    return f"{total / 1_000_000:.0f} MB" if total >= 1_000_000 else f"{total / 1000:.0f} kB"


def _model_path(d: Deployment) -> str | None:
    config = getattr(d.spec, "engine_config", None)
    return getattr(config, "model_path", None)


async def watch(
    deployments: Callable[[], Iterable[Deployment]],
    say: Callable[[str], None],
    stop: Callable[[int], None] | None,
    every: float = PROGRESS_EVERY,
) -> None:
    """Report each loading deployment until it is ready or failed. With ``stop`` (a single-model
    serve), a load failure calls ``stop(1)`` after saying why and how to fix it."""
    began = time.monotonic()
    pending = {d.name: d for d in deployments() if not d.on_demand}
    for d in pending.values():
        size = size_of(_model_path(d))
        engine = getattr(d.spec, "engine", None) or type(d.engine).__name__
        say(f"aimi: loading {d.name} ({engine}{', ' + size if size else ''})")
    last_said = began
    while pending:
        await asyncio.sleep(0.2)
        now = time.monotonic()
        for name, d in list(pending.items()):
            if d.loaded:
                say(f"aimi: {name} loaded in {now - began:.1f} s")
                del pending[name]
            elif d.failure is not None:
                del pending[name]
                fix = fix_for(d.failure)
                say(f"aimi: {name} failed to load: {d.failure}")
                if fix:
                    say(f"aimi: to fix it, {fix}")
                if stop is not None:
                    stop(1)
                    return
        if pending and now - last_said >= every:
            last_said = now
            say(f"aimi: still loading {', '.join(pending)} ({now - began:.0f} s)")
