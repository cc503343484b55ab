"""Applying a policy: the prompt before the model runs, the completion as it is generated.

The completion is held back until judged. A choice's text collects in a window; when the window
is full (or the choice ends) it is checked together with the tail of what was already released,
and only then released. A window that fails the check is never sent: the choice ends there with
``finish_reason: "content_filter"`` (or ``content_filter_error`` when the classifier could not
judge it and the policy fails closed), and its generation is stopped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aimi.engines.api import Event, Finish, TextDelta, ToolCallDelta, Usage
from aimi.safety.api import Analysis, Classifier, ClassifierError, Severity, filter_results, is_filtered
from aimi.safety.blocklist import matched
from aimi.safety.policy import Action, SafetyPolicy

log = logging.getLogger(__name__)

_CHUNK = 1000  # characters per classifier input when a long prompt is split
_CHUNK_OVERLAP = 200


@dataclass(frozen=True)
class Annotation:
    """``content_filter_results`` for what follows of choice ``index``: the worst seen so far."""

    index: int
    results: dict[str, Any]


@dataclass(frozen=True)
class Verdict:
    results: dict[str, Any]
    blocked: bool
    error: str | None = None


def _pieces(text: str) -> list[str]:
    """Overlapping pieces, so that no sentence is only ever seen cut in two."""
    step = _CHUNK - _CHUNK_OVERLAP
    return [text[i : i + _CHUNK] for i in range(0, max(len(text) - _CHUNK_OVERLAP, 1), step)] or [""]


class ContentFilter:
    def __init__(self, policy: SafetyPolicy, classifier: Classifier) -> None:
        self.policy = policy
        self.classifier = classifier

    def _results(self, analysis: Analysis, prompt: bool) -> dict[str, Any]:
        return filter_results(
            analysis, self.policy.thresholds, prompt and self.policy.jailbreak, bool(self.policy.blocklists)
        )

    async def _analyze(self, texts: Sequence[str], prompt_texts: Sequence[str] | None) -> Analysis:
        pieces = [piece for text in texts for piece in _pieces(text)]
        analysis = Analysis()
        for result in await self.classifier.analyze(pieces):
            analysis = analysis.merge(result)
        if prompt_texts is not None and self.policy.jailbreak:
            detected = await self.classifier.jailbreak(prompt_texts)
            if detected is None:
                raise ClassifierError("this classifier cannot detect jailbreaks")
            analysis = analysis.merge(Analysis(jailbreak=detected))
        return analysis

    async def judge(
        self,
        texts: Sequence[str],
        prompt_texts: Sequence[str] | None = None,
        blocklist_texts: Sequence[str] | None = None,
    ) -> Verdict:
        """Check ``texts``; ``prompt_texts`` (the user's turns) are also checked for jailbreaks, and
        the blocklists are matched over ``blocklist_texts`` (default: ``texts``)."""
        block = self.policy.action is Action.BLOCK
        hits = tuple(
            dict.fromkeys(
                name for text in (texts if blocklist_texts is None else blocklist_texts)
                for name in matched(self.policy.blocklists, text)
            )
        )  # fmt: skip
        try:
            start = getattr(self.classifier, "start", None)
            if start is not None:
                await start()  # loading (once, at startup) is not judging: no timeout on it
            analysis = await asyncio.wait_for(self._analyze(texts, prompt_texts), self.policy.timeout)
        except Exception as exc:  # a classifier that fails in any way is judged by on_error
            message = str(exc) or "the classifier did not answer in time"
            if not isinstance(exc, ClassifierError | TimeoutError):
                log.exception("content safety classifier failed")
                message = f"the classifier failed ({type(exc).__name__})"
            log.warning("content safety could not judge a text: %s", message)
            error: dict[str, Any] = {"error": {"code": "content_filter_error", "message": message}}
            if hits:  # the blocklists need no classifier: what they match is blocked whatever happened
                results = self._results(Analysis(blocklist=hits), prompt_texts is not None)
                return Verdict({**results, **error}, block, None)
            return Verdict(error, block and self.policy.on_error == "closed", message)
        results = self._results(analysis.merge(Analysis(blocklist=hits)), prompt_texts is not None)
        return Verdict(results, block and is_filtered(results))

    def hold_back(self, events: AsyncIterator[Event], stop: Callable[[int], None]) -> AsyncIterator[Event | Annotation]:
        """``events`` with each choice's text held back until judged; ``stop(index)`` ends the
        generation of a choice that was cut."""
        return _Windows(self, stop).run(events)


@dataclass
class _Choice:
    held: list[Event] = field(default_factory=list)
    held_text: str = ""
    released: str = ""  # everything sent so far: blocklists match over it all
    released_tail: str = ""
    worst: dict[str, Any] = field(default_factory=dict)
    done: bool = False
    calling: bool = False


def _text_of(event: Event) -> str:
    if isinstance(event, TextDelta):
        return event.text
    if isinstance(event, ToolCallDelta):
        return (event.name or "") + " " + event.arguments if event.id is not None else event.arguments
    return ""


def _worst(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    merged = dict(old)
    for key, value in new.items():
        before = merged.get(key)
        if before is None or key == "error":
            merged[key] = value
        elif "severity" in value:
            higher = Severity.parse(value["severity"]) > Severity.parse(before["severity"])
            merged[key] = {
                "filtered": before["filtered"] or value["filtered"],
                "severity": value["severity"] if higher else before["severity"],
            }
        elif "detected" in value:
            merged[key] = {k: before[k] or value[k] for k in ("filtered", "detected")}
        else:
            merged[key] = {
                "filtered": before["filtered"] or value["filtered"],
                "details": before["details"] + [d for d in value["details"] if d not in before["details"]],
            }
    return merged


class _Windows:
    def __init__(self, content: ContentFilter, stop: Callable[[int], None]) -> None:
        self.content = content
        self.policy = content.policy
        self.stop = stop
        self.choices: dict[int, _Choice] = {}

    async def _release(self, index: int, choice: _Choice) -> AsyncIterator[Event | Annotation]:
        """Judge the held window; release it, or end the choice."""
        text = choice.held_text
        verdict = Verdict({}, False)
        if text:
            # A blocklist match may span any number of windows: it is looked for in the whole answer.
            verdict = await self.content.judge([choice.released_tail + text], None, [choice.released + text])
        if verdict.results:
            choice.worst = _worst(choice.worst, verdict.results)
        if verdict.blocked:
            choice.done = True
            choice.held, choice.held_text = [], ""
            self.stop(index)
            if self.policy.annotate and choice.worst:
                yield Annotation(index, choice.worst)
            yield Finish("content_filter_error" if verdict.error else "content_filter", index)
            return
        if self.policy.annotate and verdict.results:
            yield Annotation(index, choice.worst)
        for event in choice.held:
            yield event
        choice.released += text
        choice.released_tail = choice.released[-self.policy.overlap :]
        choice.held, choice.held_text = [], ""

    async def run(self, events: AsyncIterator[Event]) -> AsyncIterator[Event | Annotation]:
        async for event in events:
            if isinstance(event, Usage):
                yield event
                continue
            choice = self.choices.setdefault(event.index, _Choice())
            if choice.done:
                continue  # the rest of a cut choice is never sent
            if isinstance(event, Finish):
                async for out in self._release(event.index, choice):
                    yield out
                if not choice.done:
                    choice.done = True
                    yield event
                continue
            choice.held.append(event)
            choice.held_text += _text_of(event)
            if isinstance(event, ToolCallDelta):
                choice.calling = True  # a tool call is judged whole, at the choice's end, never sent in part
            if len(choice.held_text) >= self.policy.window and not choice.calling:
                async for out in self._release(event.index, choice):
                    yield out
