"""The Ray Serve application of a deployments file: the gateway (aimi's own app, the same
``create_app``, as the ingress deployment) and one engine pool per deployment.

Each aimi deployment's engine becomes a :class:`~aimi.engines.ray.RayEngine` in the gateway,
pointing at its pool; the pool runs the engine the file names, on the replicas its
``[deployments.scale]`` asks for:

* ``max_ongoing_requests`` = slots + queue: what one replica takes before Ray holds requests
  back; ``target_ongoing_requests`` = slots: what the autoscaler aims at per replica;
* ``min_replicas`` (0: the pool scales to zero and the first request waits for a replica, within
  its deadline) to ``max_replicas``; at the maximum and full, the handle's queue (``queue``
  requests) takes the rest, and past it Ray's back-pressure is aimi's 429 with Retry-After;
* ``ray_actor_options``: CPUs (the engine's threads, unless ``num_cpus`` says), GPUs, custom
  resources (to pin a pool to nodes that advertise them);
* deployments naming the same ``pool`` share one multiplexed pool, each replica holding at most
  ``models_per_replica`` of their engines (the cluster form of the loaded-model cap).

``serve run aimi.scale:build config=aimi.toml`` runs it with Ray's own command;
``aimi serve --config aimi.toml --ray [ADDRESS]`` builds the same application.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aimi.auth.keys import ApiKey
from aimi.auth.oidc import AuthConfig
from aimi.deployments.build import DeploymentSpec, endpoints_from_config, from_config, keys_from_config
from aimi.deployments.config import ConfigError, FileConfig, GatewayConfig, ScaleConfig, load_config
from aimi.deployments.registry import Endpoint
from aimi.engines import build_engine
from aimi.engines.api import EngineConfig, ModelFacts
from aimi.scale.pool import EnginePool, PoolMember
from aimi.settings import Settings

APP_NAME = "aimi"
GATEWAY = "gateway"
GATEWAY_MAX_ONGOING = 4096
"""Requests one gateway replica takes at once: aimi's own admission (quotas, the deployments'
queues) bounds them, not Ray's default of 5."""
BACKPRESSURE_RETRY_AFTER = 1.0
RAY_ENGINE = "aimi.engines.ray:RayEngine"


@dataclass(frozen=True)
class PoolPlan:
    """One engine pool: its Serve deployment's name, the aimi deployments it serves, its scale."""

    name: str
    members: dict[str, PoolMember]
    scale: ScaleConfig
    slots: int
    queue: int
    threads: int | None
    multiplexed: bool

    @property
    def handle_queue(self) -> int:
        """Requests a gateway replica's handle holds while every replica is full."""
        return max(1, self.queue)

    @property
    def capacity(self) -> int:
        """The most requests the pool holds: every replica full, and the queue."""
        return self.scale.max_replicas * (self.slots + self.queue) + self.handle_queue

    def deployment_options(self) -> dict[str, Any]:
        """The Serve deployment options of the pool."""
        scale = self.scale
        actor: dict[str, Any] = {"num_cpus": scale.num_cpus or self.threads or 1}
        if scale.num_gpus:
            actor["num_gpus"] = scale.num_gpus
        if scale.resources:
            actor["resources"] = dict(scale.resources)
        autoscaling: dict[str, Any] = {
            "min_replicas": scale.min_replicas,
            "max_replicas": scale.max_replicas,
            "target_ongoing_requests": self.slots,
            "upscale_delay_s": scale.upscale_delay_s,
            "downscale_delay_s": scale.downscale_delay_s,
            # Scale to zero and back: the delay before the first replica is the upscale delay.
            "downscale_to_zero_delay_s": scale.downscale_delay_s,
        }
        if scale.initial_replicas is not None:
            autoscaling["initial_replicas"] = scale.initial_replicas
        return {
            "name": self.name,
            "ray_actor_options": actor,
            "max_ongoing_requests": self.slots + self.queue,
            "max_queued_requests": self.handle_queue,
            "autoscaling_config": autoscaling,
            # A stream still running on a replica being replaced (a reload) finishes first.
            "graceful_shutdown_timeout_s": 600,
            "health_check_period_s": 2,
            "health_check_timeout_s": 30,
        }


@dataclass
class Plan:
    """What runs where: the gateway's specs (their engines Ray engines), its keys and endpoints,
    and the pools."""

    settings: Settings
    specs: list[DeploymentSpec]
    keys: list[str | ApiKey] | None
    endpoints: list[Endpoint]
    pools: list[PoolPlan]
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    auth: AuthConfig | None = None
    """The file's ``[auth]`` table: the gateway's bearer-token policy."""


def _pool_name(spec: DeploymentSpec) -> str:
    shared = spec.scale.pool if spec.scale is not None else None
    return f"pool-{shared}" if shared else f"engine-{spec.name}"


def check_gateway(settings: Settings, gateway: GatewayConfig, source: str) -> None:
    """More than one gateway replica shares quotas and the ledger, or not at all: refused otherwise."""
    if gateway.replicas == 1:
        return
    missing = []
    if settings.quota_backend != "redis":
        missing.append("the Redis quota backend (AIMI_QUOTA_BACKEND=redis, AIMI_REDIS_URL=redis://...)")
    if not (settings.database_url or "").startswith("postgresql"):
        missing.append("the PostgreSQL usage ledger (AIMI_DATABASE_URL=postgresql://...)")
    if missing:
        raise ConfigError(
            f"{source}: gateway.replicas = {gateway.replicas}: several gateway replicas must share their quotas "
            f"and their usage ledger; set {' and '.join(missing)}, or serve with gateway.replicas = 1"
        )


def plan(
    settings: Settings,
    specs: list[DeploymentSpec],
    keys: Sequence[str | ApiKey] | None,
    endpoints: Sequence[Endpoint],
    gateway: GatewayConfig | None = None,
    source: str = "config",
    auth: AuthConfig | None = None,
) -> Plan:
    """Place every deployment of ``specs`` in a pool and point the gateway's engines at them."""
    gateway = gateway or GatewayConfig()
    check_gateway(settings, gateway, source)
    grouped: dict[str, list[DeploymentSpec]] = {}
    for spec in specs:
        grouped.setdefault(_pool_name(spec), []).append(spec)
    pools: list[PoolPlan] = []
    gateway_specs: list[DeploymentSpec] = []
    for name, members in grouped.items():
        scale = members[0].scale or ScaleConfig()
        multiplexed = scale.pool is not None
        if multiplexed:
            if len({(m.scale or ScaleConfig()).model_dump_json() for m in members}) > 1:
                raise ConfigError(
                    f"{source}: deployments {', '.join(repr(m.name) for m in members)} share pool "
                    f"{scale.pool!r}: give them the same [deployments.scale] fields"
                )
        first = members[0].engine_config
        pool = PoolPlan(
            name=name,
            members={
                m.name: PoolMember(m.name, m.engine, m.engine_config, None if _is_path(m) else m.model_ref)
                for m in members
            },
            scale=scale,
            slots=max(m.engine_config.slots for m in members),
            queue=max(m.limits.max_queue for m in members),
            threads=first.threads,
            multiplexed=multiplexed,
        )
        pools.append(pool)
        for m in members:
            capabilities = build_engine(m.engine, m.engine_config).capabilities
            facts = None
            if multiplexed or scale.min_replicas == 0:
                # No replica to ask without starting one: what the file says.
                facts = ModelFacts(context_length=m.engine_config.context_size, n_slots=m.engine_config.slots)
            options = {
                "app": APP_NAME,
                "pool": name,
                "model_id": m.name if multiplexed else None,
                "capabilities": capabilities,
                "facts": facts,
                "capacity": pool.capacity,
                "start_timeout": settings.request_timeout,
            }
            gateway_specs.append(replace(m, engine=RAY_ENGINE, engine_config=EngineConfig(options=options)))
    ring = list(keys) if keys is not None else None
    return Plan(settings, gateway_specs, ring, list(endpoints), pools, gateway, auth)


def _is_path(spec: DeploymentSpec) -> bool:
    """A model given as a path is the same path on every node (a shared volume); others are
    resolved by each replica into its node's cache."""
    return spec.model_ref is None or Path(spec.model_ref).expanduser().exists()


class Gateway:
    """A gateway replica: aimi's app, built on the replica, served by Serve's HTTP ingress."""

    def __init__(
        self,
        settings: Settings,
        specs: list[DeploymentSpec],
        keys: list[str | ApiKey] | None,
        endpoints: list[Endpoint],
        auth: AuthConfig | None,
        *pools: Any,
    ) -> None:
        # ``pools``: the pools' handles, bound so that Serve deploys the pools with the gateway.
        self._served = (settings, specs, keys, endpoints, auth)

    def __serve_build_asgi_app__(self) -> Any:
        from aimi.auth.oidc import token_policy
        from aimi.runtime import runtime_of
        from aimi.server import create_app

        settings, specs, keys, endpoints, auth = self._served
        app = create_app(settings, specs, keys, endpoints)
        runtime_of(app).tokens.policy = token_policy(settings, auth)
        return app


def application(planned: Plan, cache_dir: str | None = None) -> Any:
    """The Serve application of ``planned``: ``serve.run`` it (under :data:`APP_NAME`)."""
    from ray.serve.config import BackpressureConfig

    from ray import serve

    cache = cache_dir or str(planned.settings.cache_dir)
    bound = []
    for pool in planned.pools:
        options = pool.deployment_options()
        options["backpressure_config"] = BackpressureConfig(status_code=429, retry_after_s=BACKPRESSURE_RETRY_AFTER)
        deployment = serve.deployment(EnginePool).options(**options)
        models = pool.scale.models_per_replica if pool.multiplexed else None
        bound.append(deployment.bind(pool.members, models, cache))
    gateway = serve.deployment(serve.ingress()(Gateway)).options(
        name=GATEWAY,
        num_replicas=planned.gateway.replicas,
        ray_actor_options={"num_cpus": planned.gateway.num_cpus},
        max_ongoing_requests=GATEWAY_MAX_ONGOING,
        graceful_shutdown_timeout_s=planned.settings.request_timeout,
    )
    # The pools are bound to the gateway so that Serve deploys them with it; the gateway reaches
    # them by name (see RayEngine.start).
    return gateway.bind(planned.settings, planned.specs, planned.keys, planned.endpoints, planned.auth, *bound)


def from_file(
    settings: Settings, path: Path, status: Callable[[str], None], keys: Sequence[str | ApiKey] | None = None
) -> Plan:
    """The plan of a deployments file; its own keys join ``keys`` (None with no keys anywhere: no auth)."""
    config: FileConfig = load_config(path)
    specs = from_config(settings, config, status)
    file_keys = keys_from_config(config)
    ring: list[str | ApiKey] | None = None if keys is None and not file_keys else [*(keys or []), *file_keys]
    return plan(settings, specs, ring, endpoints_from_config(config), config.gateway, str(path), config.auth)


def build(args: dict[str, str]) -> Any:
    """Ray's application builder: ``serve run aimi.scale:build config=aimi.toml``. Keys come from
    the file and from AIMI_API_KEY; settings from the environment, as for ``aimi serve``."""
    settings = Settings()
    if "config" not in args:
        raise ConfigError("give the deployments file: serve run aimi.scale:build config=aimi.toml")
    keys: list[str | ApiKey] | None = None if settings.no_auth else list(settings.api_key)
    planned = from_file(settings, Path(args["config"]), lambda line: print(line, file=sys.stderr), keys)
    if planned.keys is None and not settings.no_auth:
        raise ConfigError("no API key: give the file [[keys]], set AIMI_API_KEY, or AIMI_NO_AUTH=1 (local only!)")
    return application(planned)
