"""The Ray fields of a deployments file and the plan built from them, without a Ray cluster:
refused with a message by plain ``aimi serve``, placed in pools with the options the design says
for ``--ray``, and several gateway replicas refused without shared quotas and ledger."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aimi.deployments.build import DeploymentSpec, from_config
from aimi.deployments.config import ConfigError, parse_config, refuse_ray_fields
from aimi.scale.app import plan
from aimi.settings import Settings

SCALED = """
[[deployments]]
name = "chat"
engine = "fake"
model = "m.gguf"
slots = 4
threads = 2
[deployments.limits]
max_queue = 6
[deployments.scale]
min_replicas = 0
max_replicas = 3
num_gpus = 1
resources = { big_memory = 1 }

[[deployments]]
name = "tiny-a"
engine = "fake"
model = "m.gguf"
[deployments.scale]
pool = "small"
models_per_replica = 2

[[deployments]]
name = "tiny-b"
engine = "fake"
model = "m.gguf"
[deployments.scale]
pool = "small"
models_per_replica = 2
"""


def _specs(tmp_path: Path, text: str = SCALED) -> list[DeploymentSpec]:
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    text = text.replace('model = "m.gguf"', f'model = "{tmp_path / "m.gguf"}"')
    return from_config(Settings(home=tmp_path, cache_dir=tmp_path), parse_config(text), lambda _: None)


def test_plain_serve_refuses_the_ray_fields_naming_each(tmp_path: Path) -> None:
    config = parse_config(SCALED + "\n[gateway]\nreplicas = 1\n", "aimi.toml")
    with pytest.raises(ConfigError) as caught:
        refuse_ray_fields(config, "aimi.toml")
    assert str(caught.value) == (
        "aimi.toml: deployments[0] ('chat').scale, deployments[1] ('tiny-a').scale, deployments[2] ('tiny-b').scale, "
        "gateway: only a Ray cluster can honour this; serve with `aimi serve --config aimi.toml --ray` "
        "(pip install 'aimi[ray]'), or remove it"
    )


def test_aimi_serve_without_ray_exits_with_the_message(tmp_path: Path) -> None:
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    path = tmp_path / "aimi.toml"
    path.write_text(SCALED)
    done = subprocess.run(
        [sys.executable, "-m", "aimi", "serve", "--config", str(path), "--no-auth"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"AIMI_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2
    assert f"aimi: {path}: deployments[0] ('chat').scale" in done.stderr
    assert "only a Ray cluster can honour this" in done.stderr


def test_a_scale_field_out_of_range_names_its_place() -> None:
    text = '[[deployments]]\nname = "c"\nmodel = "m.gguf"\n[deployments.scale]\nmin_replicas = 3\nmax_replicas = 2\n'
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert (
        str(caught.value)
        == "config: deployments[0] ('c').scale.max_replicas: Value error, must be at least min_replicas"
    )


def test_each_deployment_gets_a_pool_and_shared_ones_one_multiplexed_pool(tmp_path: Path) -> None:
    planned = plan(Settings(home=tmp_path), _specs(tmp_path), ["k" * 32], [])
    chat, small = planned.pools
    assert (chat.name, list(chat.members), chat.multiplexed) == ("engine-chat", ["chat"], False)
    assert (small.name, list(small.members), small.multiplexed) == ("pool-small", ["tiny-a", "tiny-b"], True)
    options = chat.deployment_options()
    assert options["ray_actor_options"] == {"num_cpus": 2, "num_gpus": 1, "resources": {"big_memory": 1}}
    assert options["max_ongoing_requests"] == 4 + 6  # slots + queue
    assert options["max_queued_requests"] == 6
    autoscaling = options["autoscaling_config"]
    assert (autoscaling["min_replicas"], autoscaling["max_replicas"], autoscaling["target_ongoing_requests"]) == (
        0,
        3,
        4,
    )
    # The gateway's engines point at the pools, with the pool engine's capabilities.
    by_name = {s.name: s for s in planned.specs}
    assert {s.engine for s in planned.specs} == {"aimi.engines.ray:RayEngine"}
    assert by_name["chat"].engine_config.options["pool"] == "engine-chat"
    assert by_name["chat"].engine_config.options["capacity"] == 3 * (4 + 6) + 6
    assert by_name["tiny-b"].engine_config.options["model_id"] == "tiny-b"
    assert by_name["chat"].engine_config.options["capabilities"].logprobs is True


def test_deployments_sharing_a_pool_must_scale_alike(tmp_path: Path) -> None:
    text = SCALED.replace("models_per_replica = 2\n", "models_per_replica = 3\n", 1)
    with pytest.raises(ConfigError) as caught:
        plan(Settings(home=tmp_path), _specs(tmp_path, text), None, [])
    assert str(caught.value) == (
        "config: deployments 'tiny-a', 'tiny-b' share pool 'small': give them the same [deployments.scale] fields"
    )


@pytest.mark.parametrize(
    ("settings", "missing"),
    [
        (
            {},
            "the Redis quota backend (AIMI_QUOTA_BACKEND=redis, AIMI_REDIS_URL=redis://...) and "
            "the PostgreSQL usage ledger (AIMI_DATABASE_URL=postgresql://...)",
        ),
        ({"quota_backend": "redis"}, "the PostgreSQL usage ledger (AIMI_DATABASE_URL=postgresql://...)"),
        (
            {"database_url": "postgresql://db/aimi"},
            "the Redis quota backend (AIMI_QUOTA_BACKEND=redis, AIMI_REDIS_URL=redis://...)",
        ),
    ],
)
def test_several_gateway_replicas_need_redis_and_postgres(
    tmp_path: Path, settings: dict[str, Any], missing: str
) -> None:
    config = parse_config(SCALED + "\n[gateway]\nreplicas = 2\n", "aimi.toml")
    with pytest.raises(ConfigError) as caught:
        plan(Settings(home=tmp_path, **settings), _specs(tmp_path), None, [], config.gateway, "aimi.toml")
    assert str(caught.value) == (
        "aimi.toml: gateway.replicas = 2: several gateway replicas must share their quotas and their usage ledger; "
        f"set {missing}, or serve with gateway.replicas = 1"
    )
    both: dict[str, Any] = {"quota_backend": "redis", "database_url": "postgresql://db/aimi"}
    planned = plan(Settings(home=tmp_path, **both), _specs(tmp_path), None, [], config.gateway, "aimi.toml")
    assert planned.gateway.replicas == 2
