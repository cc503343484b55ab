"""The OpenAPI 3.1 document served at ``/swagger.json`` and ``/openapi.json``.

Built from the same pydantic models that parse requests, so it cannot drift from them; a test
checks that it lists exactly the routes the app serves.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import Response

from aimi import __version__
from aimi.protocol import responses as out
from aimi.protocol.chat import AzureChatRequest, OpenAIChatRequest
from aimi.protocol.completions import AzureCompletionRequest, OpenAICompletionRequest
from aimi.protocol.embeddings import AzureEmbeddingsRequest, AzureImageEmbeddingsRequest, OpenAIEmbeddingsRequest
from aimi.server import control_openapi
from aimi.surfaces.json_response import JSONResponse

# Azure clients append routes to whatever endpoint they were given: the Foundry style ends
# in /models, the 2025 spec's host template in /api/models.
AZURE_PREFIXES = ("", "/models", "/api/models")
# One deployment by path, so a client can point its endpoint at it.
DEPLOYMENT_PREFIX = "/deployments/{deployment}"
# The OpenAI v1 API, also for one deployment, and under Azure AI Foundry's /openai/v1.
OPENAI_PREFIXES = ("/v1", f"{DEPLOYMENT_PREFIX}/v1", "/openai/v1")
# Azure OpenAI's data plane: openai.AzureOpenAI(azure_endpoint=..., azure_deployment=...) calls
# {azure_endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...
AZURE_OPENAI_PREFIX = "/openai/deployments/{deployment}"
_DEPLOYMENT = {
    "name": "deployment",
    "in": "path",
    "required": True,
    "description": "The deployment's name.",
    "schema": {"type": "string"},
}
_MODELS: list[type[BaseModel]] = [
    AzureChatRequest,
    OpenAIChatRequest,
    AzureCompletionRequest,
    OpenAICompletionRequest,
    out.ModelInfo,
    out.ModelList,
    out.ChatCompletion,
    out.ChatCompletionChunk,
    out.TextCompletion,
    out.ErrorBody,
    out.Health,
    AzureEmbeddingsRequest,
    OpenAIEmbeddingsRequest,
    AzureImageEmbeddingsRequest,
    out.EmbeddingsResult,
    *control_openapi.MODELS,
]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _errors(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "Invalid request: malformed JSON, a field that breaks its rule, unknown keys under "
        "`extra-parameters: error`, a prompt longer than the context",
        401: "Missing or invalid key",
        403: "The key lacks the route's scope, or may not use this deployment",
        409: "The change conflicts with what exists: a name taken, a key already revoked, a deployment of the file",
        408: "The request body stopped arriving for AIMI_BODY_TIMEOUT seconds (`request_timeout`)",
        413: "Body larger than the configured limit",
        415: "A body declared as anything but JSON (`unsupported_media_type`)",
        404: "No deployment has the name asked (`DeploymentNotFound` under /openai/deployments), or it does not "
        "serve this kind of request (chat on an embeddings model, or the reverse)",
        422: "A parameter this deployment cannot honour (`parameter_not_supported`, with `detail[].loc`)",
        429: "Too many requests queued; see Retry-After",
        500: "The engine failed while generating a non-streamed answer (`engine_error`)",
        503: "Model loading or engine down; see Retry-After",
        504: "The generation did not start, or did not end, within AIMI_REQUEST_TIMEOUT (`timeout`)",
    }
    return {
        str(s): {"description": reasons[s], "content": {"application/json": {"schema": _ref(out.ErrorBody)}}}
        for s in statuses
    }


_EXTRA_PARAMETERS = {
    "name": "extra-parameters",
    "in": "header",
    "required": False,
    "description": "What to do with body keys the API does not define: error (default on the Azure surface), "
    "drop, or pass-through (default on /v1) to hand them to the engine.",
    "schema": {"type": "string", "enum": ["error", "drop", "pass-through", "allow"]},
}
_API_VERSION = {
    "name": "api-version",
    "in": "query",
    "required": False,
    "description": "Accepted with any value, or none.",
    "schema": {"type": "string"},
}


def _post(
    summary: str, request: type[BaseModel], ok: dict[str, Any], statuses: tuple[int, ...], azure: bool, tag: str
) -> dict[str, Any]:
    parameters = [_EXTRA_PARAMETERS] + ([_API_VERSION] if azure else [])
    return {
        "post": {
            "summary": summary,
            "tags": [tag],
            "parameters": parameters,
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(request)}}},
            "responses": {"200": ok, **_errors(*statuses)},
        }
    }


def _generation(
    summary: str, request: type[BaseModel], answer: type[BaseModel], chunk: type[BaseModel], azure: bool, tag: str
) -> dict[str, Any]:
    ok = {
        "description": "The answer; with `stream: true`, server-sent events of chunks ending in `data: [DONE]`",
        "content": {"application/json": {"schema": _ref(answer)}, "text/event-stream": _event_stream(chunk)},
    }
    return _post(summary, request, ok, (400, 401, 403, 404, 408, 413, 415, 422, 429, 500, 503, 504), azure, tag)


def _event_stream(chunk: type[BaseModel]) -> dict[str, Any]:
    # OpenAPI 3.1 has no keyword for a stream, so tools (schemathesis among them) read the schema
    # of a text/event-stream answer as the schema of each event (what OpenAPI 3.2 calls
    # itemSchema): an event's `data` is a chunk's JSON, an error envelope's after a failure, or
    # `[DONE]`. x-sse-data names the chunk for code generators.
    return {
        "schema": {
            "type": "object",
            "description": f"One server-sent event: `data: <{chunk.__name__} JSON>\\n\\n` per chunk, then "
            "`data: [DONE]\\n\\n`. A failure after the 200 ends the stream with one "
            "`data: <ErrorBody JSON>\\n\\n` frame and no `[DONE]`.",
            "required": ["data"],
            "properties": {
                "data": {
                    "type": "string",
                    "if": {"const": "[DONE]"},
                    "then": True,
                    "else": {
                        "contentMediaType": "application/json",
                        "contentSchema": {"anyOf": [_ref(chunk), _ref(out.ErrorBody)]},
                    },
                }
            },
            "x-sse-data": _ref(chunk),
        }
    }


def _embeddings(summary: str, request: type[BaseModel], azure: bool, tag: str) -> dict[str, Any]:
    ok = {
        "description": "One embedding per input, in the requested encoding_format",
        "content": {"application/json": {"schema": _ref(out.EmbeddingsResult)}},
    }
    return _post(summary, request, ok, (400, 401, 403, 404, 408, 413, 415, 422, 429, 503), azure, tag)


def _get(
    summary: str,
    answer: type[BaseModel],
    tag: str,
    public: bool = False,
    parameters: list[dict[str, Any]] | None = None,
    statuses: tuple[int, ...] = (401,),
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "tags": [tag],
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": _ref(answer)}}},
            **({} if public else _errors(*statuses)),
        },
    }
    if parameters:
        operation["parameters"] = parameters
    if public:
        operation["security"] = []
    return {"get": operation}


@cache
def build() -> dict[str, Any]:
    """The whole document."""
    _, schemas = models_json_schema([(m, "validation") for m in _MODELS], ref_template="#/components/schemas/{model}")
    paths: dict[str, Any] = {
        "/health": _get(
            "Readiness: 200 when the model is loaded, 503 while loading or when the engine is down",
            out.Health,
            "service",
            public=True,
        ),
    }
    for prefix in (*AZURE_PREFIXES, DEPLOYMENT_PREFIX):
        paths[f"{prefix}/info"] = _get(
            "Azure AI Model Inference: the model behind the endpoint",
            out.ModelInfo,
            "azure",
            parameters=[_API_VERSION],
            statuses=(401, 403, 404) if prefix == DEPLOYMENT_PREFIX else (401,),
        )
        paths[f"{prefix}/chat/completions"] = _generation(
            "Azure AI Model Inference: chat completions",
            AzureChatRequest,
            out.ChatCompletion,
            out.ChatCompletionChunk,
            True,
            "azure",
        )
        paths[f"{prefix}/completions"] = _generation(
            "Azure AI Model Inference: text completions (legacy)",
            AzureCompletionRequest,
            out.TextCompletion,
            out.TextCompletion,
            True,
            "azure",
        )
        paths[f"{prefix}/embeddings"] = _embeddings(
            "Azure AI Model Inference: text embeddings", AzureEmbeddingsRequest, True, "azure"
        )
        paths[f"{prefix}/images/embeddings"] = _embeddings(
            "Azure AI Model Inference: image embeddings (data: URLs only)", AzureImageEmbeddingsRequest, True, "azure"
        )
    paths["/v1/models"] = _get("OpenAI: the deployments served", out.ModelList, "openai")
    paths["/openai/v1/models"] = paths["/v1/models"]
    for prefix in OPENAI_PREFIXES:
        paths[f"{prefix}/chat/completions"] = _generation(
            "OpenAI: chat completions", OpenAIChatRequest, out.ChatCompletion, out.ChatCompletionChunk, False, "openai"
        )
        paths[f"{prefix}/completions"] = _generation(
            "OpenAI: text completions", OpenAICompletionRequest, out.TextCompletion, out.TextCompletion, False, "openai"
        )
        paths[f"{prefix}/embeddings"] = _embeddings("OpenAI: embeddings", OpenAIEmbeddingsRequest, False, "openai")
    paths[f"{AZURE_OPENAI_PREFIX}/info"] = _get(
        "Azure OpenAI: the model behind the deployment",
        out.ModelInfo,
        "azure-openai",
        parameters=[_API_VERSION],
        statuses=(401, 403, 404),
    )
    paths[f"{AZURE_OPENAI_PREFIX}/chat/completions"] = _generation(
        "Azure OpenAI: chat completions (the OpenAI body)",
        OpenAIChatRequest,
        out.ChatCompletion,
        out.ChatCompletionChunk,
        True,
        "azure-openai",
    )
    paths[f"{AZURE_OPENAI_PREFIX}/completions"] = _generation(
        "Azure OpenAI: text completions (the OpenAI body)",
        OpenAICompletionRequest,
        out.TextCompletion,
        out.TextCompletion,
        True,
        "azure-openai",
    )
    paths[f"{AZURE_OPENAI_PREFIX}/embeddings"] = _embeddings(
        "Azure OpenAI: embeddings (the OpenAI body)", OpenAIEmbeddingsRequest, True, "azure-openai"
    )
    for path, item in paths.items():
        if path.startswith((DEPLOYMENT_PREFIX, AZURE_OPENAI_PREFIX)):
            paths[path] = {
                method: {**op, "parameters": [_DEPLOYMENT, *op.get("parameters", [])]} for method, op in item.items()
            }
    paths["/metrics"] = {
        "get": {
            "summary": "Prometheus metrics (a key with the metrics scope)",
            "tags": ["service"],
            "responses": {
                "200": {
                    "description": "Prometheus text format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                **_errors(401, 403),
            },
        }
    }
    paths["/admin/usage"] = {
        "get": {
            "summary": "Usage totals from the ledger (a key with the admin scope)",
            "tags": ["service"],
            "parameters": [
                {"name": "by", "in": "query", "schema": {"type": "string"}, "description": "key,deployment,day,..."},
                {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                {"name": "until", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "csv"]}},
            ],
            "responses": {
                "200": {
                    "description": "One row per group: requests, prompt and completion tokens, cost",
                    "content": {
                        "application/json": {"schema": {"type": "object"}},
                        "text/csv": {"schema": {"type": "string"}},
                    },
                },
                **_errors(400, 401, 403, 503),
            },
        }
    }
    paths.update(control_openapi.paths(_errors))
    for path in ("/swagger.json", "/openapi.json"):
        paths[path] = {
            "get": {
                "summary": "This document",
                "tags": ["service"],
                "security": [],
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1 document",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "aimi",
            "version": __version__,
            "description": "Azure AI Model Inference API and OpenAI v1 API over self-hosted models.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "ApiKeyAuth": {"type": "apiKey", "in": "header", "name": "api-key"},
                "BearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A key, or a token signed by a trusted OpenID Connect issuer such as Microsoft "
                    "Entra ID (AIMI_OIDC_ISSUER; audience https://ml.azure.com by default).",
                },
            },
        },
        "security": [{"ApiKeyAuth": []}, {"BearerAuth": []}],
    }


async def document(request: Request) -> Response:
    return JSONResponse(build())
