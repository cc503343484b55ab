#!/usr/bin/env python3
"""Check a KubeRay RayService manifest for aimi (default: examples/kuberay/rayservice.yaml).

Without a Kubernetes cluster to dry-run against, it checks what can be checked here:

* the manifest's shape as KubeRay's ``ray.io/v1`` RayService has it (the fields used, the group
  specs, the pod templates), and that ``rayVersion`` is the Ray release aimi pins;
* ``serveConfigV2`` against Ray Serve's own schema (``ServeDeploySchema``), every application's
  ``import_path`` importable and an aimi application builder;
* the deployments file each application reads: mounted from a ConfigMap of the manifest, in every
  pod template, and valid for aimi, planned with the environment the pods set (so that several
  gateway replicas without Redis and PostgreSQL fail here, as they would at start).

Exits 0 with one line per check, or 1 naming the first problem.
Needs the ray extra: ``pip install -e '.[ray]'``.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / "examples" / "kuberay" / "rayservice.yaml"
SPEC_FIELDS = {
    "serveConfigV2",
    "rayClusterConfig",
    "serviceUnhealthySecondThreshold",
    "deploymentUnhealthySecondThreshold",
    "upgradeStrategy",
    "excludeHeadPodFromServeSvc",
}
CLUSTER_FIELDS = {
    "rayVersion",
    "enableInTreeAutoscaling",
    "autoscalerOptions",
    "headGroupSpec",
    "workerGroupSpecs",
    "headServiceAnnotations",
    "suspend",
}
HEAD_FIELDS = {"rayStartParams", "template", "serviceType", "headService", "enableIngress"}
WORKER_FIELDS = {
    "groupName",
    "replicas",
    "minReplicas",
    "maxReplicas",
    "rayStartParams",
    "template",
    "scaleStrategy",
    "numOfHosts",
    "suspend",
    "idleTimeoutSeconds",
}


class Problem(Exception):
    pass


def _need(condition: bool, message: str) -> None:
    if not condition:
        raise Problem(message)


def _templates(cluster: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    head = cluster["headGroupSpec"]
    _need(set(head) <= HEAD_FIELDS, f"headGroupSpec: unknown fields {sorted(set(head) - HEAD_FIELDS)}")
    found = [("headGroupSpec", head["template"])]
    for i, group in enumerate(cluster.get("workerGroupSpecs", [])):
        where = f"workerGroupSpecs[{i}]"
        _need(set(group) <= WORKER_FIELDS, f"{where}: unknown fields {sorted(set(group) - WORKER_FIELDS)}")
        _need(isinstance(group.get("groupName"), str), f"{where}.groupName is required")
        low, high = group.get("minReplicas", 0), group.get("maxReplicas", 2**31)
        _need(low <= group.get("replicas", low) <= high, f"{where}: replicas outside minReplicas..maxReplicas")
        found.append((where, group["template"]))
    for where, template in found:
        containers = template.get("spec", {}).get("containers", [])
        _need(len(containers) >= 1, f"{where}.template.spec.containers: none")
        _need(all(c.get("image") for c in containers), f"{where}: every container needs an image")
    return found


def _env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment; values from secrets stand in as placeholders of their kind."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif "valueFrom" in item:
            key = item["valueFrom"].get("secretKeyRef", {}).get("key", "")
            stand_in = {"redis-url": "redis://redis:6379/0", "database-url": "postgresql://db/aimi"}
            env[item["name"]] = stand_in.get(key, "from-a-secret-0123456789abcdef")
    return env


def check(path: Path) -> list[str]:
    from ray.serve.schema import ServeDeploySchema

    from aimi.deployments.config import GatewayConfig, parse_config
    from aimi.scale.app import check_gateway
    from aimi.settings import Settings
    from ray import __version__ as ray_version

    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    services = [d for d in documents if d.get("kind") == "RayService"]
    _need(len(services) == 1, "exactly one RayService")
    service = services[0]
    _need(service.get("apiVersion") == "ray.io/v1", "RayService apiVersion must be ray.io/v1")
    _need(bool(service.get("metadata", {}).get("name")), "RayService metadata.name is required")
    spec = service["spec"]
    _need(set(spec) <= SPEC_FIELDS, f"spec: unknown fields {sorted(set(spec) - SPEC_FIELDS)}")
    cluster = spec["rayClusterConfig"]
    _need(set(cluster) <= CLUSTER_FIELDS, f"rayClusterConfig: unknown fields {sorted(set(cluster) - CLUSTER_FIELDS)}")
    _need(cluster.get("rayVersion") == ray_version, f"rayVersion {cluster.get('rayVersion')} is not {ray_version}")
    lines = [f"RayService {service['metadata']['name']}: ray.io/v1, Ray {ray_version}"]
    templates = _templates(cluster)
    lines.append(f"pod templates: {', '.join(where for where, _ in templates)}")

    serve_config = ServeDeploySchema.model_validate(yaml.safe_load(spec["serveConfigV2"]))
    lines.append(f"serveConfigV2: valid for Ray Serve ({len(serve_config.applications)} application(s))")
    config_maps = {d["metadata"]["name"]: d.get("data", {}) for d in documents if d.get("kind") == "ConfigMap"}
    for app in serve_config.applications:
        module, _, attribute = app.import_path.partition(":")
        builder = getattr(importlib.import_module(module), attribute)
        _need(
            callable(builder) and module.startswith("aimi.scale"),
            f"{app.name}: {app.import_path} is not aimi's builder",
        )
        config_path = Path(str((app.args or {}).get("config", "")))
        _need(config_path.is_absolute(), f"{app.name}: args.config must be an absolute path in the pods")
        for where, template in templates:
            pod = template["spec"]
            volumes = {v["name"]: v for v in pod.get("volumes", [])}
            for container in pod["containers"]:
                mounts = [m for m in container.get("volumeMounts", []) if config_path.parent == Path(m["mountPath"])]
                _need(len(mounts) == 1, f"{where}: {config_path.parent} is not mounted in {container['name']}")
                volume = volumes.get(mounts[0]["name"], {})
                name = volume.get("configMap", {}).get("name")
                _need(name in config_maps, f"{where}: {config_path.parent} is not a ConfigMap of this manifest")
                text = config_maps[name].get(config_path.name)
                _need(text is not None, f"ConfigMap {name} has no {config_path.name}")
                config = parse_config(text, f"ConfigMap {name}/{config_path.name}")
                env = _env(container)
                settings = Settings(
                    quota_backend=env.get("AIMI_QUOTA_BACKEND", "memory"),
                    database_url=env.get("AIMI_DATABASE_URL"),
                    redis_url=env.get("AIMI_REDIS_URL", "redis://127.0.0.1:6379/0"),
                )
                check_gateway(settings, config.gateway or GatewayConfig(), f"{where} {container['name']}")
                _need("AIMI_API_KEY" in env or "AIMI_API_KEY_FILE" in env, f"{where}: no AIMI_API_KEY for the gateway")
        lines.append(
            f"{app.name}: {app.import_path} reads {config_path}, a valid deployments file mounted in every pod "
            f"({', '.join(d.name for d in config.deployments)}; {config.gateway.replicas if config.gateway else 1} "
            "gateway replica(s))"
        )
    return lines


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else DEFAULT
    try:
        for line in check(path):
            print(f"ok: {line}")
    except Exception as exc:  # a Problem, or what Ray's schema or aimi's checks raised
        print(f"{path}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
