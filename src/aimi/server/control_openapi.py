"""The control plane's part of the OpenAPI document: ``/admin/keys``, ``/admin/deployments``
and ``/admin/audit``, from the models that parse their bodies and describe their answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from aimi.control import schema
from aimi.control.keys import KeyRequest, RotateRequest

MODELS: list[type[BaseModel]] = [
    KeyRequest,
    RotateRequest,
    schema.ManagedKey,
    schema.ManagedKeyWithSecret,
    schema.ManagedKeyList,
    schema.DeploymentRequest,
    schema.RuntimeDeployment,
    schema.ServedDeployment,
    schema.ServedDeploymentList,
    schema.AuditRow,
    schema.AuditList,
]

_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_ADMIN = "admin"


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(description: str, model: type[BaseModel]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _operation(
    summary: str,
    responses: dict[str, Any],
    errors: Callable[..., dict[str, Any]],
    statuses: tuple[int, ...],
    body: type[BaseModel] | None = None,
    required: bool = True,
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "tags": [_ADMIN],
        "responses": {**responses, **errors(401, 403, *statuses)},
    }
    if body is not None:
        operation["requestBody"] = {"required": required, "content": {"application/json": {"schema": _ref(body)}}}
    if parameters:
        operation["parameters"] = parameters
    return operation


def _query(name: str, description: str, fmt: str | None = None) -> dict[str, Any]:
    kind: dict[str, Any] = {"type": "integer"} if name == "limit" else {"type": "string"}
    if fmt:
        kind["format"] = fmt
    return {"name": name, "in": "query", "required": False, "description": description, "schema": kind}


def paths(errors: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """The admin paths; ``errors(*statuses)`` gives the document's error responses."""
    key = _json("The key", schema.ManagedKey)
    with_secret = schema.ManagedKeyWithSecret
    changes = (400, 404, 409, 413, 415, 503)
    return {
        "/admin/keys": {
            "get": _operation(
                "Managed keys, revoked and expired ones too (never a secret)",
                {"200": _json("Every managed key", schema.ManagedKeyList)},
                errors,
                (503,),
            ),
            "post": _operation(
                "Issue a managed key; the answer holds its secret, shown this once",
                {"201": _json("The key and its secret", with_secret)},
                errors,
                (400, 409, 413, 415, 503),
                KeyRequest,
            ),
        },
        "/admin/keys/{name}": {
            "get": _operation("One managed key", {"200": key}, errors, (404, 503), parameters=[_NAME]),
        },
        "/admin/keys/{name}/rotate": {
            "post": _operation(
                "A new secret for the key; the old one works for `grace_hours` more",
                {"200": _json("The key and its new secret", with_secret)},
                errors,
                changes,
                RotateRequest,
                required=False,
                parameters=[_NAME],
            ),
        },
        "/admin/keys/{name}/revoke": {
            "post": _operation(
                "Refuse the key (both its secrets) on every replica within AIMI_CONTROL_REFRESH_SECONDS",
                {"200": key},
                errors,
                changes,
                parameters=[_NAME],
            ),
        },
        "/admin/deployments": {
            "get": _operation(
                "Every deployment served: the file's and the runtime ones, with their state and expiry",
                {"200": _json("The deployments", schema.ServedDeploymentList)},
                errors,
                (),
            ),
        },
        "/admin/deployments/{name}": {
            "get": _operation(
                "One deployment served",
                {"200": _json("The deployment", schema.ServedDeployment)},
                errors,
                (404,),
                parameters=[_NAME],
            ),
            "put": _operation(
                "Create or replace a runtime deployment (the file's are a 409)",
                {
                    "200": _json("Replaced", schema.RuntimeDeployment),
                    "201": _json("Created", schema.RuntimeDeployment),
                },
                errors,
                (400, 409, 413, 415, 503),
                schema.DeploymentRequest,
                parameters=[_NAME],
            ),
            "delete": _operation(
                "Remove a runtime deployment; its requests finish first (the file's are a 409)",
                {"204": {"description": "Removed"}},
                errors,
                (404, 409, 503),
                parameters=[_NAME],
            ),
        },
        "/admin/audit": {
            "get": _operation(
                "The audit log of admin actions, newest first",
                {"200": _json("The rows", schema.AuditList)},
                errors,
                (400, 503),
                parameters=[
                    _query("since", "From this time (ISO 8601)", "date-time"),
                    _query("until", "Up to (not including) this time", "date-time"),
                    _query("actor", "Only this actor"),
                    _query("action", "Only this action (keys.create, deployments.put, ...)"),
                    _query("target", "Only actions on this key or deployment"),
                    _query("limit", "At most this many rows (1 to 1000; default 100)"),
                ],
            ),
        },
    }
