"""How well content safety judges: recall and false positives on the held-out evaluation set.

Each classifier judges every prompt of ``benchmarks/data/safety/heldout.jsonl`` (or ``--part
dev``) as a deployment's prompt check would, at the default thresholds (``medium`` in every
category, jailbreak detection on):

* recall, per category and language: the share of clearly harmful prompts (medium and high) judged
  at least medium in their category (jailbreaks: detected);
* false positives: the share of the category's benign look-alikes the policy would refuse (any
  category at medium or more, or a jailbreak);
* per severity: the share of prompts written at each severity judged at least low / medium /
  high, which shows the levels are ordered (a lower threshold catches more);
* cost: the median time of one judgement of one short prompt (one encoder pass), and per prompt
  when 32 are judged together.

Classifiers: ``embedded`` (the default, USE multilingual and its head), ``minilm`` (the embedded
classifier with ``model = "all-minilm-l6-v2"``: reference statements only, the classifier before
the head), ``head`` (USE and its head without the patterns), ``blocklist`` (the sample blocklist
below alone). ``guard`` needs a Llama Guard deployment, and no PyPI package ships one: it is not
measured here.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safety_data import load

from aimi.safety.api import CATEGORIES, Analysis, Classifier, Severity
from aimi.safety.blocklist import Blocklist, matched

KINDS = (*CATEGORIES, "jailbreak")
LANGS = ("en", "es", "zh")
# What a blocklist-only deployment might list: words with no benign use in ordinary prompts.
SAMPLE_BLOCKLIST = Blocklist(
    "sample",
    terms=[
        "kill myself", "suicide", "hang myself", "slit my wrists", "exterminate", "subhuman", "vermin",
        "porn", "nude pictures", "pipe bomb", "nerve agent", "ignore all previous instructions", "DAN",
        "developer mode", "suicidarme", "exterminar", "infrahumanos", "desnuda", "bomba casera",
    ],
    patterns=["自杀", "上吊", "消灭", "畜生", "裸照", "色情", "炸弹", "忽略之前的所有指令"],
)  # fmt: skip


class BlocklistOnly:
    """The sample blocklist as a classifier: a match is high severity in the row's category."""

    async def analyze(self, texts: Sequence[str]) -> list[Analysis]:
        return [Analysis(blocklist=matched([SAMPLE_BLOCKLIST], text)) for text in texts]

    async def jailbreak(self, texts: Sequence[str]) -> bool | None:
        return False

    async def close(self) -> None:
        return None


def _model_path(ref: str) -> Path:
    from aimi.deployments.sources import resolve
    from aimi.settings import Settings

    return resolve(ref, Settings().cache_dir, status=lambda line: print(line, file=sys.stderr)).path


async def judge_all(classifier: Classifier, rows: list[dict[str, Any]]) -> list[tuple[Analysis, bool]]:
    texts = [row["text"] for row in rows]
    out: list[tuple[Analysis, bool]] = []
    for start in range(0, len(texts), 64):
        batch = texts[start : start + 64]
        analyses = await classifier.analyze(batch)
        for text, analysis in zip(batch, analyses, strict=True):
            out.append((analysis, bool(await classifier.jailbreak([text]))))
    return out


def _flagged(analysis: Analysis, category: str, threshold: Severity) -> bool:
    if analysis.blocklist:
        return True
    return analysis.severities.get(category, Severity.SAFE) >= threshold


def _blocked(analysis: Analysis, attack: bool) -> bool:
    return attack or bool(analysis.blocklist) or any(s >= Severity.MEDIUM for s in analysis.severities.values())


def figures(rows: list[dict[str, Any]], verdicts: list[tuple[Analysis, bool]]) -> dict[str, Any]:
    """recall / fpr per category and language, and the severity table."""
    result: dict[str, Any] = {"recall": {}, "fpr": {}, "severity": {}}
    for kind in KINDS:
        for lang in (*LANGS, "all"):
            mine = [(r, v) for r, v in zip(rows, verdicts, strict=True) if r["category"] == kind]
            mine = [(r, v) for r, v in mine if lang == "all" or r["lang"] == lang]
            if kind == "jailbreak":
                harmful = [v[1] or bool(v[0].blocklist) for r, v in mine if r["kind"] == "harmful"]
            else:
                harmful = [
                    _flagged(v[0], kind, Severity.MEDIUM)
                    for r, v in mine
                    if r["labels"].get(kind) in ("medium", "high")
                ]
            benign = [_blocked(*v) for r, v in mine if r["kind"] == "benign"]
            result["recall"][f"{kind}/{lang}"] = (sum(harmful), len(harmful))
            result["fpr"][f"{kind}/{lang}"] = (sum(benign), len(benign))
        if kind == "jailbreak":
            continue
        for level in ("low", "medium", "high"):
            judged = [v[0] for r, v in zip(rows, verdicts, strict=True) if r["labels"].get(kind) == level]
            result["severity"][f"{kind}/{level}"] = [
                (sum(_flagged(a, kind, t) for a in judged), len(judged))
                for t in (Severity.LOW, Severity.MEDIUM, Severity.HIGH)
            ]
    return result


async def cost(classifier: Classifier) -> dict[str, float]:
    short = ["How do I sharpen a kitchen knife properly?"]
    batch = [f"Prompt number {i}: tell me about the history of the lighthouse on the bay." for i in range(32)]
    singles = []
    for i in range(15):
        started = time.perf_counter()
        await classifier.analyze([f"{short[0]} ({i})"])  # a new text each time: no cache
        singles.append(time.perf_counter() - started)
    started = time.perf_counter()
    await classifier.analyze(batch)
    return {
        "one_ms": statistics.median(singles) * 1000,
        "per_text_in_32_ms": (time.perf_counter() - started) * 1000 / 32,
    }


def _pct(pair: tuple[int, int]) -> str:
    hit, total = pair
    return f"{100 * hit / total:5.1f}% ({hit}/{total})" if total else "-"


def report(name: str, result: dict[str, Any]) -> str:
    lines = [f"## {name}", "", "| category | recall all | en | es | zh | false positives all | en | es | zh |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for kind in KINDS:
        cells = [_pct(result["recall"][f"{kind}/{lang}"]) for lang in ("all", *LANGS)]
        cells += [_pct(result["fpr"][f"{kind}/{lang}"]) for lang in ("all", *LANGS)]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines += ["", "| category, written severity | judged ≥ low | ≥ medium | ≥ high |", "| --- | --- | --- | --- |"]
    for key, triple in result["severity"].items():
        lines.append(f"| {key} | " + " | ".join(_pct(p) for p in triple) + " |")
    if "cost" in result:
        c = result["cost"]
        lines += [
            "",
            f"cost: {c['one_ms']:.1f} ms to judge one short prompt; "
            f"{c['per_text_in_32_ms']:.1f} ms a prompt in a batch of 32",
        ]
    return "\n".join(lines)


async def run(classifiers: Sequence[str], part: str) -> dict[str, Any]:
    from aimi.safety.embedded import EmbeddedClassifier

    rows = load(part)
    results: dict[str, Any] = {}
    for name in classifiers:
        classifier: Classifier
        if name == "embedded":
            classifier = EmbeddedClassifier({}, _model_path)
        elif name == "minilm":
            classifier = EmbeddedClassifier({"model": "all-minilm-l6-v2", "patterns": False}, _model_path)
        elif name == "head":  # the model alone, without the patterns
            classifier = EmbeddedClassifier({"patterns": False}, _model_path)
        elif name == "blocklist":
            classifier = BlocklistOnly()
        else:
            raise ValueError(name)
        start = getattr(classifier, "start", None)
        if start is not None:
            await start()
        result = figures(rows, await judge_all(classifier, rows))
        if name != "blocklist":
            result["cost"] = await cost(classifier)
        await classifier.close()
        results[name] = result
        print(report(name, result) + "\n", flush=True)
    return results


def main(classifiers: Sequence[str], part: str, json_path: Path | None) -> int:
    results = asyncio.run(run(classifiers, part))
    if json_path is not None:
        json_path.write_text(json.dumps(results, indent=2))
    return 0
