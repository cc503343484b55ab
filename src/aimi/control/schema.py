"""Wire models of the control plane's answers, for the OpenAPI document (the routes build plain
dicts of the same shape; ``tests/api/test_control.py`` validates every answer against these)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aimi.deployments.config import DeploymentConfig
from aimi.quota.api import QuotaLimits


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ManagedKey(_Closed):
    """A managed key, without its secret or its digests."""

    name: str
    state: Literal["active", "expired", "revoked"]
    scopes: list[Literal["inference", "metrics", "admin"]]
    deployments: list[str] | None = Field(description="The deployments it may use; null: every one.")
    quota: QuotaLimits | None
    created_at: str
    created_by: str
    expires_at: str | None
    rotated_at: str | None
    previous_secret_expires_at: str | None = Field(
        description="Until when the secret before the last rotation still works; null: it no longer does."
    )
    revoked_at: str | None


class ManagedKeyWithSecret(ManagedKey):
    """The answer of a create or a rotation: the key and its new secret, shown this once."""

    key: str = Field(description="The secret: send it as `api-key` or `Authorization: Bearer`. Not shown again.")


class ManagedKeyList(_Closed):
    object: Literal["list"]
    data: list[ManagedKey]


class DeploymentRequest(DeploymentConfig):
    """``PUT /admin/deployments/{name}``: the fields of a ``[[deployments]]`` table (``name``, if
    given, must be the path's), and how long it lives."""

    name: str | None = None  # type: ignore[assignment]
    expires_in_hours: float | None = Field(
        None, gt=0, description="Remove the deployment after this many hours (Azure's temporary endpoints: 168)."
    )


class ServedDeployment(_Closed):
    """A deployment served now: one of the file's, or one made at runtime (with its fields)."""

    name: str
    source: Literal["file", "runtime"]
    state: str
    engine: str | None
    expires_at: str | None
    config: dict[str, Any] | None = None
    created_at: str | None = None
    created_by: str | None = None
    updated_at: str | None = None


class RuntimeDeployment(_Closed):
    """A runtime deployment as written (the answer of a PUT)."""

    name: str
    source: Literal["runtime"]
    config: dict[str, Any]
    created_at: str
    created_by: str
    updated_at: str
    expires_at: str | None


class ServedDeploymentList(_Closed):
    object: Literal["list"]
    data: list[ServedDeployment]


class AuditRow(_Closed):
    """One admin action: who (a key's name, ``cli:<user>``, or ``aimi`` for an expiry), what, on
    what, when, from where, and how it ended (``ok`` or ``refused``, with the HTTP status)."""

    id: int
    time: str
    actor: str
    action: str
    target: str | None
    outcome: Literal["ok", "refused"]
    status: int | None
    client: str | None
    request_id: str | None
    detail: dict[str, Any]


class AuditList(_Closed):
    object: Literal["list"]
    data: list[AuditRow]
