"""From settings or a deployments file to the specs of what one aimi serves."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from aimi.auth.keys import ApiKey, Principal
from aimi.deployments.config import ConfigError, DeploymentConfig, FileConfig, QuotaConfig, SafetyConfig
from aimi.deployments.profile import ModelProfile
from aimi.deployments.registry import Endpoint, Limits
from aimi.deployments.sources import ModelSourceError, ResolvedModel, resolve
from aimi.engines.api import EngineConfig
from aimi.quota.api import QuotaLimits
from aimi.safety.api import CATEGORIES, Severity
from aimi.safety.blocklist import Blocklist
from aimi.safety.policy import Action, SafetyPolicy
from aimi.settings import Settings
from aimi.usage.records import Prices


@dataclass(frozen=True)
class DeploymentSpec:
    """Everything needed to build one deployment: names, engine and its config, profile, limits."""

    name: str
    display_name: str
    engine: str
    engine_config: EngineConfig
    profile: ModelProfile
    limits: Limits
    idle_unload_seconds: float | None = None
    quota: QuotaLimits = QuotaLimits()
    prices: Prices | None = None
    safety: SafetyPolicy | None = None


def server_limits(settings: Settings) -> Limits:
    """The per-request limits of the server's settings."""
    return Limits(
        max_tokens=settings.max_tokens_limit,
        max_messages=settings.max_messages,
        max_queue=settings.max_queue,
        default_temperature=settings.default_temperature,
        max_n=settings.max_n,
        max_best_of=settings.max_best_of,
        max_logit_bias=settings.max_logit_bias,
        max_tools=settings.max_tools,
        max_embedding_inputs=settings.max_embedding_inputs,
        max_embedding_chars=settings.max_embedding_chars,
        max_image_bytes=settings.max_image_bytes,
    )


def server_quota(settings: Settings) -> QuotaLimits:
    """A deployment's quota unless its entry says otherwise (0 turns a limit off)."""
    return QuotaLimits(
        requests_per_minute=settings.quota_requests_per_minute or None,
        tokens_per_minute=settings.quota_tokens_per_minute or None,
        max_concurrent=settings.quota_max_concurrent or None,
    )


def _quota(base: QuotaLimits, entry: QuotaConfig | None) -> QuotaLimits | None:
    if entry is None:
        return base
    given = entry.model_dump(exclude_unset=True)
    return QuotaLimits(
        **{
            name: (given[name] or None) if name in given else getattr(base, name)
            for name in ("requests_per_minute", "tokens_per_minute", "max_concurrent")
        }
    )


def safety_policy(entry: SafetyConfig | None) -> SafetyPolicy | None:
    """The file's safety table as a policy; None when absent or switched off."""
    if entry is None or not entry.enabled:
        return None
    levels = {category: getattr(entry, category) for category in CATEGORIES}
    return SafetyPolicy(
        action=Action(entry.action),
        thresholds={c: Severity.parse(level) for c, level in levels.items() if level != "off"},
        blocklists=tuple(Blocklist(b.name, tuple(b.terms), tuple(b.patterns)) for b in entry.blocklists),
        jailbreak=entry.jailbreak,
        annotate=entry.annotate,
        classifier=entry.classifier,
        classifier_options=dict(entry.classifier_options),
        window=entry.window,
        overlap=min(entry.overlap, entry.window),
        on_error=entry.on_error,
        timeout=entry.timeout,
        max_prompt_chars=entry.max_prompt_chars,
    )


def from_settings(settings: Settings, model: ResolvedModel) -> list[DeploymentSpec]:
    """The one deployment of ``aimi serve --model``."""
    config = EngineConfig(
        model_path=str(model.path),
        slots=settings.slots,
        context_size=settings.context_size,
        threads=settings.threads,
        options=settings.engine_options,
    )
    return [
        DeploymentSpec(
            name=settings.deployment_name or model.name,
            display_name=model.display_name,
            engine=settings.engine or model.engine or "llamacpp",
            engine_config=config,
            profile=model.profile,
            limits=server_limits(settings),
            quota=server_quota(settings),
        )
    ]


def _spec(settings: Settings, entry: DeploymentConfig, model: ResolvedModel | None, where: str) -> DeploymentSpec:
    options = dict(entry.engine_options)
    key_env = options.pop("api_key_env", None)
    if key_env is not None:
        if key_env not in os.environ:
            raise ConfigError(f"{where}.engine_options.api_key_env: the environment has no {key_env}")
        options["api_key"] = os.environ[key_env]
    engine = entry.engine or (model.engine if model else "") or "llamacpp"
    profile = model.profile if model else ModelProfile()
    overrides = entry.profile.model_dump(exclude_none=True, exclude={"display_name"})
    profile = replace(profile, **overrides)
    limits = server_limits(settings)
    limits = replace(limits, **entry.limits.model_dump(exclude_none=True))
    if entry.defaults.temperature is not None:
        limits = replace(limits, default_temperature=entry.defaults.temperature)
    limits = replace(limits, default_top_p=entry.defaults.top_p, default_max_tokens=entry.defaults.max_tokens)
    return DeploymentSpec(
        name=entry.name,
        display_name=entry.profile.display_name or (model.display_name if model else entry.name),
        engine=engine,
        engine_config=EngineConfig(
            model_path=str(model.path) if model else None,
            slots=entry.slots or settings.slots,
            context_size=entry.context_size or settings.context_size,
            threads=entry.threads or settings.threads,
            options=options,
        ),
        profile=profile,
        limits=limits,
        idle_unload_seconds=entry.idle_unload_seconds,
        quota=_quota(server_quota(settings), entry.quota) or QuotaLimits(),
        prices=Prices(entry.prices.prompt_per_1m, entry.prices.completion_per_1m) if entry.prices else None,
        safety=safety_policy(entry.safety),
    )


def from_config(settings: Settings, config: FileConfig, status: Callable[[str], None]) -> list[DeploymentSpec]:
    """The deployments of a file, their models fetched into the cache first."""
    specs = []
    for i, entry in enumerate(config.deployments):
        where = f"deployments[{i}] ({entry.name!r})"
        try:
            model = resolve(entry.model, settings.cache_dir, status) if entry.model else None
        except ModelSourceError as exc:
            raise ConfigError(f"{where}.model: {exc}") from None
        specs.append(_spec(settings, entry, model, where))
    return specs


def endpoints_from_config(config: FileConfig) -> list[Endpoint]:
    """The file's traffic-splitting endpoints."""
    return [
        Endpoint(
            name=entry.name,
            traffic=tuple(entry.traffic.items()),
            mirror=entry.mirror.deployment if entry.mirror else None,
            mirror_percent=entry.mirror.percent if entry.mirror else 0.0,
        )
        for entry in config.endpoints
    ]


def keys_from_config(config: FileConfig) -> list[ApiKey]:
    """The file's keys, as digests; a secret named by ``secret_env`` must be in the environment."""
    keys = []
    for i, entry in enumerate(config.keys):
        allowed = frozenset(entry.deployments) if entry.deployments is not None else None
        quota = _quota(QuotaLimits(), entry.quota)
        scopes = frozenset(entry.scopes)
        if entry.sha256 is not None:
            keys.append(ApiKey(bytes.fromhex(entry.sha256), Principal(entry.name, allowed, quota, scopes)))
            continue
        secret = entry.secret
        if entry.secret_env is not None:
            secret = os.environ.get(entry.secret_env)
            if not secret:
                raise ConfigError(f"keys[{i}] ({entry.name!r}).secret_env: the environment has no {entry.secret_env}")
        assert secret is not None  # the file was checked: exactly one of the three
        keys.append(ApiKey.from_secret(secret, entry.name, allowed, quota, scopes))
    return keys


def check(settings: Settings, config: FileConfig, path: Path) -> list[str]:
    """What ``aimi config check`` reports: one line per deployment, without fetching anything."""
    lines = []
    for entry in config.deployments:
        source = entry.model or entry.engine_options.get("url", "")
        lines.append(f"{entry.name}: {entry.engine or 'catalog/default engine'} <- {source}")
        if entry.safety is not None and entry.safety.enabled:
            lines.append(f"  content safety: {entry.safety.action}, classifier {entry.safety.classifier}")
    for key in config.keys:
        scope = ", ".join(key.deployments) if key.deployments is not None else "every deployment"
        lines.append(f"key {key.name}: {scope}")
    return lines
