"""From settings or a deployments file to the specs of what one aimi serves."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from aimi.auth.keys import ApiKey, Principal
from aimi.deployments.config import ConfigError, DeploymentConfig, FileConfig, ScaleConfig, engine_rules
from aimi.deployments.limits import Limits, SamplingDefaults, overlay
from aimi.deployments.profile import ModelProfile
from aimi.deployments.registry import Endpoint
from aimi.deployments.sources import ModelSourceError, ResolvedModel, resolve
from aimi.engines.api import EngineConfig
from aimi.engines.options import OptionError
from aimi.quota.api import QuotaLimits
from aimi.safety.policy import SafetyPolicy
from aimi.settings import Settings
from aimi.usage.records import Prices


@dataclass(frozen=True)
class DeploymentSpec:
    """Everything needed to build one deployment: names, engine and its config, profile, limits,
    sampling defaults, quota, prices and content safety."""

    name: str
    display_name: str
    engine: str
    engine_config: EngineConfig
    profile: ModelProfile
    limits: Limits
    defaults: SamplingDefaults = SamplingDefaults()
    idle_unload_seconds: float | None = None
    quota: QuotaLimits = QuotaLimits()
    prices: Prices | None = None
    safety: SafetyPolicy | None = None
    scale: ScaleConfig | None = None
    model_ref: str | None = None
    """``scale``: how its engine pool runs on a Ray cluster; ``model_ref``: the model as the file
    names it, which each engine replica resolves on its own node."""


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
            limits=settings.limits,
            defaults=settings.defaults,
            quota=settings.quota,
        )
    ]


def _spec(settings: Settings, entry: DeploymentConfig, model: ResolvedModel | None, where: str) -> DeploymentSpec:
    try:
        options = engine_rules(entry.engine).from_file(entry.engine_options)
    except OptionError as exc:
        raise ConfigError(f"{where}.engine_options.{exc.option}: {exc}") from None
    engine = entry.engine or (model.engine if model else "") or "llamacpp"
    profile = model.profile if model else ModelProfile()
    overrides = entry.profile.model_dump(exclude_none=True, exclude={"display_name"})
    profile = replace(profile, **overrides)
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
        limits=overlay(settings.limits, entry.limits),
        defaults=overlay(settings.defaults, entry.defaults),
        idle_unload_seconds=entry.idle_unload_seconds,
        quota=overlay(settings.quota, entry.quota) if entry.quota is not None else settings.quota,
        prices=Prices(entry.prices.prompt_per_1m, entry.prices.completion_per_1m) if entry.prices else None,
        safety=entry.safety if entry.safety is not None and entry.safety.enabled else None,
        scale=entry.scale,
        model_ref=entry.model,
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
        quota = overlay(QuotaLimits(), entry.quota) if entry.quota is not None else QuotaLimits()
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
