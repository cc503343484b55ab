"""The deployments file: several deployments, one aimi.

TOML (read with the standard library's ``tomllib``), one ``[[deployments]]`` table each::

    [[deployments]]
    name = "chat"
    model = "smollm2-135m-instruct"      # catalog name, .gguf path, model directory, pypi://...
    slots = 2
    context_size = 2048

    [deployments.profile]                # optional: what the model can do
    display_name = "SmolLM2-135M-Instruct"
    system_role = true

    [deployments.defaults]               # optional: sampling defaults
    temperature = 0.2

    [deployments.limits]                 # optional: per-request limits (else the server's)
    max_tokens = 1024

    [deployments.quota]                  # optional: else the server's (1,000 requests, 200,000 tokens a minute)
    tokens_per_minute = 50000
    max_concurrent = 8

    [deployments.prices]                 # optional: per million tokens, for `aimi usage`
    prompt_per_1m = 0.15
    completion_per_1m = 0.60

    [deployments.safety]                 # optional: content safety on prompts and completions
    violence = "low"                     # the lowest severity blocked, per category ("off": never)
    jailbreak = true
    [[deployments.safety.blocklists]]
    name = "internal"
    terms = ["project bluebird"]
    patterns = ['\\b\\d{3}-\\d{2}-\\d{4}\\b']

    [[keys]]
    name = "team-a"
    secret_env = "TEAM_A_KEY"
    scopes = ["inference"]               # or "metrics" (/metrics), "admin" (/admin/usage)
    [keys.quota]                         # optional: the key's own limits, on top of the deployment's
    requests_per_minute = 60

    [auth.oidc]                          # optional: signed tokens (Entra ID), see aimi.auth.oidc
    [[auth.oidc.issuers]]
    url = "https://login.microsoftonline.com/<tenant-id>/v2.0"

    [[deployments]]
    name = "remote"
    engine = "upstream"                  # an OpenAI-compatible server elsewhere
    [deployments.engine_options]
    url = "http://10.0.0.5:8000/v1"
    api_key_env = "REMOTE_KEY"           # the upstream's key comes from the environment

Every mistake is reported with the deployment and the field: ``deployments[1] ('remote').engine_options.url``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from aimi.auth.oidc import AuthConfig, check_grants
from aimi.deployments.limits import Limits, SamplingDefaults
from aimi.engines import ENGINES, engine_options
from aimi.engines.options import EngineOptions
from aimi.quota.api import QuotaLimits
from aimi.safety.policy import SafetyPolicy


class ConfigError(Exception):
    """A deployments file that cannot be served; the message names the place and the rule."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProfileConfig(_Strict):
    """Overrides of the model profile (the catalog's, or the defaults for a path)."""

    display_name: str | None = None
    provider: str | None = None
    model_type: Literal["chat-completions", "embeddings", "image_embeddings"] | None = None
    system_role: bool | None = None
    vision: bool | None = None
    audio: bool | None = None
    tools: bool | None = None
    json_output: bool | None = None
    dimensions: bool | None = None
    input_prefixes: dict[str, str] | None = None

    @field_validator("model_type", mode="before")
    @classmethod
    def _singular_chat(cls, value: object) -> object:
        # Files written before /info said "chat-completions" keep working.
        return "chat-completions" if value == "chat-completion" else value


class PricesConfig(_Strict):
    """What a deployment's tokens cost, per million, for ``aimi usage``."""

    prompt_per_1m: Annotated[float, Field(ge=0)] = 0.0
    completion_per_1m: Annotated[float, Field(ge=0)] = 0.0


class DeploymentConfig(_Strict):
    """One deployment of the file."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    model: str | None = None
    engine: str | None = None
    engine_options: dict[str, Any] = Field(default_factory=dict)
    slots: Annotated[int, Field(ge=1, le=256)] | None = None
    context_size: Annotated[int, Field(ge=64)] | None = None
    threads: Annotated[int, Field(ge=1)] | None = None
    idle_unload_seconds: Annotated[float, Field(gt=0)] | None = None
    profile: ProfileConfig = Field(default_factory=ProfileConfig)
    defaults: SamplingDefaults = Field(default_factory=SamplingDefaults)
    limits: Limits = Field(default_factory=Limits)
    quota: QuotaLimits | None = None
    prices: PricesConfig | None = None
    safety: SafetyPolicy | None = None

    @field_validator("engine_options")
    @classmethod
    def _as_the_engine_wants(cls, options: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        engine_rules(info.data.get("engine")).check_file(options)
        return options


class KeyConfig(_Strict):
    """A key of the file: a name (its id in logs), exactly one of its secret, the environment
    variable holding it, or its SHA-256; and the deployments it may use (others get 403)."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    secret: Annotated[str, Field(min_length=16)] | None = None
    secret_env: str | None = None
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    deployments: list[str] | None = None
    quota: QuotaLimits | None = None
    scopes: Annotated[list[Literal["inference", "metrics", "admin"]], Field(min_length=1)] = ["inference"]


class MirrorConfig(_Strict):
    deployment: str
    percent: Annotated[float, Field(ge=0, le=100)]


class EndpointConfig(_Strict):
    """A name that splits traffic over deployments by weight, and may mirror a share of it to a
    shadow deployment whose answers are discarded."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    traffic: Annotated[dict[str, Annotated[float, Field(ge=0)]], Field(min_length=1)]
    mirror: MirrorConfig | None = None


class FileConfig(_Strict):
    """The whole file."""

    deployments: Annotated[list[DeploymentConfig], Field(min_length=1)]
    endpoints: list[EndpointConfig] = Field(default_factory=list)
    keys: list[KeyConfig] = Field(default_factory=list)
    auth: AuthConfig | None = None


def engine_rules(engine: str | None) -> type[EngineOptions]:
    """What the file's checks know of an engine: its own, for a registered engine (an import
    string's module is not imported to check a file); else that it needs a model."""
    return engine_options(engine) if engine in ENGINES else EngineOptions


def _where(loc: tuple[int | str, ...], raw: dict[str, Any]) -> str:
    """An error's place in the file, with the name of the entry it is in: ``keys[1] ('ops').sha256``."""
    parts: list[str] = []
    node: Any = raw
    for part in loc:
        if isinstance(part, int) and parts:
            entry = node[part] if isinstance(node, list) and part < len(node) else None
            name = entry.get("name") if isinstance(entry, dict) else None
            parts[-1] += f"[{part}]" + (f" ({name!r})" if isinstance(name, str) else "")
            node = entry
        else:
            parts.append(str(part))
            node = node.get(part) if isinstance(node, dict) else None
    return ".".join(parts) or "file"


def parse_config(text: str, source: str = "config") -> FileConfig:
    """The deployments of a TOML text, or a :class:`ConfigError` naming each mistake."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    return validate_config(raw, source)


def validate_config(raw: dict[str, Any], source: str = "config") -> FileConfig:
    """The deployments of a file's parsed tables (or of the same tables from elsewhere, such as
    the admin API), or a :class:`ConfigError` naming each mistake."""
    try:
        config = FileConfig.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            what = "is required" if error["type"] == "missing" else error["msg"]
            problems.append(f"{_where(tuple(error['loc']), raw)}: {what}")
        raise ConfigError(f"{source}: " + "; ".join(problems)) from None
    names = [d.name for d in config.deployments]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{source}: deployment names must be unique; repeated: {', '.join(duplicates)}")
    for i, deployment in enumerate(config.deployments):
        rules = engine_rules(deployment.engine)
        if deployment.model is None and rules.needs_model:
            raise ConfigError(f"{source}: deployments[{i}] ({deployment.name!r}).model is required")
        for option in rules.required():
            if option not in deployment.engine_options:
                raise ConfigError(
                    f"{source}: deployments[{i}] ({deployment.name!r}).engine_options.{option} is required"
                )
        safety = deployment.safety
        if safety is not None and safety.classifier == "guard":
            guard = safety.classifier_options.get("deployment")
            if guard not in names or guard == deployment.name:
                raise ConfigError(
                    f"{source}: deployments[{i}] ({deployment.name!r}).safety.classifier_options.deployment: "
                    f"name another deployment of this file to serve as the guard, not {guard!r}"
                )
        if safety is not None and safety.classifier == "azure":
            for option in ("endpoint", "key_env"):
                if not safety.classifier_options.get(option):
                    raise ConfigError(
                        f"{source}: deployments[{i}] ({deployment.name!r}).safety.classifier_options.{option} "
                        "is required for the azure classifier"
                    )
    for i, endpoint in enumerate(config.endpoints):
        where = f"{source}: endpoints[{i}] ({endpoint.name!r})"
        if endpoint.name in names or [e.name for e in config.endpoints].count(endpoint.name) > 1:
            raise ConfigError(f"{where}.name: already names a deployment or another endpoint")
        unknown = sorted(set(endpoint.traffic) - set(names))
        if unknown:
            raise ConfigError(f"{where}.traffic: no deployment named {', '.join(map(repr, unknown))}")
        if sum(endpoint.traffic.values()) <= 0:
            raise ConfigError(f"{where}.traffic: the weights add up to 0")
        if endpoint.mirror is not None and endpoint.mirror.deployment not in names:
            raise ConfigError(f"{where}.mirror.deployment: no deployment named {endpoint.mirror.deployment!r}")
    names = names + [e.name for e in config.endpoints]
    key_names = [k.name for k in config.keys]
    for i, key in enumerate(config.keys):
        where = f"{source}: keys[{i}] ({key.name!r})"
        if sum(x is not None for x in (key.secret, key.secret_env, key.sha256)) != 1:
            raise ConfigError(f"{where}: give exactly one of secret, secret_env and sha256")
        if key_names.count(key.name) > 1:
            raise ConfigError(f"{where}.name: key names must be unique")
        unknown = sorted(set(key.deployments or ()) - set(names))
        if unknown:
            raise ConfigError(f"{where}.deployments: no deployment named {', '.join(map(repr, unknown))}")
    problem = check_grants(config.auth, names, source)
    if problem is not None:
        raise ConfigError(problem)
    return config


def load_config(path: Path) -> FileConfig:
    """The deployments file at ``path``."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror}") from None
    return parse_config(text, str(path))
