"""``aimi serve --config aimi.toml --ray [ADDRESS]``: the file's application on a Ray cluster (a
local one, started here and stopped on exit, when no address is given), until SIGINT or SIGTERM;
SIGHUP re-reads the file and updates the application in place (Serve replaces the replicas of
what changed, letting their streams finish)."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from aimi.deployments.config import ConfigError
from aimi.scale.app import APP_NAME, GATEWAY, Plan, application
from aimi.settings import Settings


def direct_ingress_urls(host: str, app_name: str = APP_NAME) -> list[str]:
    """The gateway replicas' own HTTP addresses, when Serve runs with direct ingress
    (``RAY_SERVE_THROUGHPUT_OPTIMIZED=1``): no proxy between a client and aimi there. Replicas
    listen on ``host`` (the node's address when it is every interface)."""
    from ray.serve.context import _get_global_client

    details: dict[str, Any] = _get_global_client().get_serve_details()
    urls = []
    for group in details.get("target_groups", []):
        if group.get("app_name") == app_name and str(group.get("protocol")).upper().endswith("HTTP"):
            for target in group.get("targets", []):
                if GATEWAY in str(target.get("name", "")) or group.get("ingress_deployment_name") == GATEWAY:
                    address = target["ip"] if host in ("0.0.0.0", "::") else host
                    shown = f"[{address}]" if ":" in address else address
                    urls.append(f"http://{shown}:{target['port']}")
    return urls


def serve_on_ray(
    settings: Settings, address: str | None, planner: Callable[[], Plan], status: Callable[[str], None]
) -> int:
    """Serve what ``planner`` plans (it reads the file again on SIGHUP) until told to stop."""
    try:
        import ray
        from ray import serve
    except ImportError:
        print("aimi: --ray needs Ray Serve: pip install 'aimi[ray]'", file=sys.stderr)
        return 2

    try:
        planned = planner()
    except ConfigError as exc:
        print(f"aimi: {exc}", file=sys.stderr)
        return 2
    ray.init(address=address, include_dashboard=False, logging_level="WARNING")
    stop = threading.Event()
    reload = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def on_hup(*_: object) -> None:
        reload.set()
        stop.set()

    signal.signal(signal.SIGHUP, on_hup)
    try:
        serve.start(http_options={"host": settings.host, "port": settings.port})
        serve.run(application(planned), name=APP_NAME, route_prefix="/", blocking=False)
        shown = f"[{settings.host}]" if ":" in settings.host else settings.host
        url = f"http://{shown}:{settings.port}"
        status(
            f"aimi: serving {', '.join(s.display_name for s in planned.specs)} on Ray at {url} "
            f"(Azure: {url}/models, OpenAI: {url}/v1; {len(planned.pools)} engine pool(s), "
            f"{planned.gateway.replicas} gateway replica(s))"
        )
        for direct in direct_ingress_urls(settings.host):
            status(f"aimi: gateway replica at {direct} (direct ingress)")
        while True:
            stop.wait()
            if not reload.is_set():
                break
            stop.clear()
            reload.clear()
            try:
                planned = planner()
            except ConfigError as exc:
                status(f"aimi: reload failed, still serving the previous deployments: {exc}")
                continue
            serve.run(application(planned), name=APP_NAME, route_prefix="/", blocking=False)
            status(f"aimi: reloaded: serving {', '.join(s.name for s in planned.specs)}")
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0
