"""The control plane's admin API: managed keys, runtime deployments and the audit log, on SQLite
and on PostgreSQL, against an in-process server on the fake engine."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from aimi.auth.oidc import AuthConfig, token_policy
from aimi.control import schema
from aimi.control.tables import runtime_deployments
from aimi.runtime import runtime_of
from aimi.usage.store import connect
from tests.api.control_helpers import chat_as, clean, fake_model, server_on
from tests.api.helpers import assert_error
from tests.conftest import KEY, InProcessServer, in_process, wait_until
from tests.oidc_issuer import running_issuer

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('control') / 'aimi.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture(scope="module")
def server(database: str) -> Iterator[InProcessServer]:
    clean(database)
    with server_on(database) as running:
        yield running


@pytest.fixture
def admin(server: InProcessServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create(admin: httpx.Client, **fields: Any) -> dict[str, Any]:
    response = admin.post("/admin/keys", json=fields)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    schema.ManagedKeyWithSecret.model_validate(body)
    return body


def audit_rows(admin: httpx.Client, **query: str) -> list[dict[str, Any]]:
    response = admin.get("/admin/audit", params=query)
    assert response.status_code == 200, response.text
    schema.AuditList.model_validate(response.json())
    rows: list[dict[str, Any]] = response.json()["data"]
    return rows


# Keys


def test_a_created_key_is_shown_once_and_works_at_once(server: InProcessServer, admin: httpx.Client) -> None:
    name = unique("team")
    body = create(admin, name=name, scopes=["inference"])
    secret = body.pop("key")
    assert len(secret) == 32
    assert TIME.match(body.pop("created_at"))
    assert body == {
        "name": name,
        "state": "active",
        "scopes": ["inference"],
        "deployments": None,
        "quota": None,
        "created_by": "key-1",
        "expires_at": None,
        "rotated_at": None,
        "previous_secret_expires_at": None,
        "revoked_at": None,
    }
    answer = chat_as(server, secret)
    assert answer.status_code == 200, answer.text
    assert answer.json()["object"] == "chat.completion"
    bearer = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "x"}]},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )
    assert bearer.status_code == 200, bearer.text
    listed = admin.get("/admin/keys")
    assert listed.status_code == 200
    schema.ManagedKeyList.model_validate(listed.json())
    assert secret not in listed.text
    assert [k["name"] for k in listed.json()["data"]].count(name) == 1
    one = admin.get(f"/admin/keys/{name}")
    assert one.status_code == 200
    assert one.json() == {**body, "created_at": one.json()["created_at"]}
    assert secret not in admin.get("/admin/audit").text


def test_a_key_without_the_admin_scope_gets_403_on_the_admin_routes(
    server: InProcessServer, admin: httpx.Client
) -> None:
    secret = create(admin, name=unique("plain"))["key"]
    for method, path in [
        ("GET", "/admin/keys"),
        ("POST", "/admin/keys"),
        ("GET", "/admin/audit"),
        ("PUT", "/admin/deployments/x"),
        ("DELETE", "/admin/deployments/x"),
    ]:
        response = httpx.request(method, f"{server.url}{path}", headers={"api-key": secret}, json={})
        assert_error(response, 403, "Forbidden", param=None)
        assert response.json()["error"]["message"].endswith("lacks the 'admin' scope")


def test_an_admin_key_made_over_the_api_may_make_keys(server: InProcessServer, admin: httpx.Client) -> None:
    secret = create(admin, name=unique("ops"), scopes=["admin"])["key"]
    name = unique("made-by-ops")
    response = httpx.post(f"{server.url}/admin/keys", json={"name": name}, headers={"api-key": secret})
    assert response.status_code == 201, response.text
    assert response.json()["created_by"].startswith("ops-")


def test_a_taken_name_is_a_409(admin: httpx.Client) -> None:
    name = unique("twice")
    create(admin, name=name)
    again = admin.post("/admin/keys", json={"name": name})
    assert_error(again, 409, "Conflict", param="name")
    assert again.json()["error"]["message"] == f"a managed key named {name!r} exists"
    configured = admin.post("/admin/keys", json={"name": "key-1"})
    assert_error(configured, 409, "Conflict", param="name")
    assert configured.json()["error"]["message"] == "a key of the flags or the file is named 'key-1'"


@pytest.mark.parametrize(
    "body, param, message",
    [
        ({}, "name", "`name` is required"),
        ({"name": "has space"}, "name", None),
        ({"name": "ok", "scopes": []}, "scopes", None),
        ({"name": "ok", "scopes": ["root"]}, "scopes.0", None),
        ({"name": "ok", "expires_in_hours": 0}, "expires_in_hours", None),
        ({"name": "ok", "expires_in_hours": "1"}, "expires_in_hours", None),
        ({"name": "ok", "quota": {"requests_per_minute": -1}}, "quota.requests_per_minute", None),
        ({"name": "ok", "secret": "chosen-by-me-0123456789"}, "secret", None),
        ({"name": "ok", "deployments": ["nope"]}, "deployments", "deployments: no deployment named 'nope'"),
    ],
)
def test_a_bad_key_request_is_a_400_naming_the_field(
    admin: httpx.Client, body: dict[str, Any], param: str, message: str | None
) -> None:
    response = admin.post("/admin/keys", json=body)
    error = assert_error(response, 400, "invalid_request", param=param)["error"]
    if message is not None:
        assert error["message"] == message
    assert "ok" not in [k["name"] for k in admin.get("/admin/keys").json()["data"]]


def test_a_body_that_is_not_json_is_a_415_and_bad_json_a_400(admin: httpx.Client) -> None:
    form = admin.post("/admin/keys", content=b"name=x", headers={"content-type": "application/x-www-form-urlencoded"})
    assert_error(form, 415, "unsupported_media_type", param=None)
    assert form.json()["error"]["message"] == (
        "the request body must be application/json; got Content-Type 'application/x-www-form-urlencoded'"
    )
    text = admin.put("/admin/deployments/x", content=b"{}", headers={"content-type": "text/plain"})
    assert_error(text, 415, "unsupported_media_type", param=None)
    broken = admin.post("/admin/keys", content=b"{", headers={"content-type": "application/json"})
    assert_error(broken, 400, "invalid_json", param=None)
    listed = admin.post("/admin/keys", json=["name"])
    assert_error(listed, 400, "invalid_json", param=None)
    assert listed.json()["error"]["message"] == "the request body must be a JSON object; got list"


def test_a_revoked_key_is_refused_at_once_here(server: InProcessServer, admin: httpx.Client) -> None:
    name = unique("gone")
    secret = create(admin, name=name)["key"]
    assert chat_as(server, secret).status_code == 200
    revoked = admin.post(f"/admin/keys/{name}/revoke")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["state"] == "revoked"
    assert TIME.match(revoked.json()["revoked_at"])
    assert_error(chat_as(server, secret), 401, "Unauthorized", param=None)
    again = admin.post(f"/admin/keys/{name}/revoke")
    assert_error(again, 409, "Conflict", param=None)
    assert again.json()["error"]["message"] == f"the managed key {name!r} is already revoked"
    reused = admin.post("/admin/keys", json={"name": name})
    assert reused.json()["error"]["message"] == f"a managed key named {name!r} exists (revoked; names are not reused)"
    rotated = admin.post(f"/admin/keys/{name}/rotate")
    assert_error(rotated, 409, "Conflict", param=None)
    assert rotated.json()["error"]["message"] == f"the managed key {name!r} is revoked; it cannot be rotated"


def test_an_unknown_key_is_a_404(admin: httpx.Client) -> None:
    for response in (
        admin.get("/admin/keys/nobody"),
        admin.post("/admin/keys/nobody/revoke"),
        admin.post("/admin/keys/nobody/rotate", json={}),
    ):
        assert_error(response, 404, "NotFound", param=None)
        assert response.json()["error"]["message"] == "there is no managed key named 'nobody'"


def test_rotation_keeps_the_old_secret_for_the_grace_period(server: InProcessServer, admin: httpx.Client) -> None:
    name = unique("pair")
    first = create(admin, name=name)["key"]
    rotated = admin.post(f"/admin/keys/{name}/rotate")  # no body: the default grace, 24 h
    assert rotated.status_code == 200, rotated.text
    body = rotated.json()
    second = body["key"]
    assert second != first
    assert body["state"] == "active" and TIME.match(body["rotated_at"])
    assert body["previous_secret_expires_at"] is not None
    assert chat_as(server, first).status_code == 200
    assert chat_as(server, second).status_code == 200
    # A second rotation ends the oldest secret at once: a key has at most two.
    third = admin.post(f"/admin/keys/{name}/rotate", json={"grace_hours": 1}).json()["key"]
    assert_error(chat_as(server, first), 401, "Unauthorized", param=None)
    assert chat_as(server, second).status_code == 200
    assert chat_as(server, third).status_code == 200
    # No grace: the previous secret stops now.
    fourth = admin.post(f"/admin/keys/{name}/rotate", json={"grace_hours": 0}).json()
    assert fourth["previous_secret_expires_at"] is None
    assert_error(chat_as(server, third), 401, "Unauthorized", param=None)
    assert chat_as(server, fourth["key"]).status_code == 200
    bad = admin.post(f"/admin/keys/{name}/rotate", json={"grace_hours": -1})
    assert_error(bad, 400, "invalid_request", param="grace_hours")


def test_a_grace_period_ends_on_time(server: InProcessServer, admin: httpx.Client) -> None:
    name = unique("short-grace")
    first = create(admin, name=name)["key"]
    admin.post(f"/admin/keys/{name}/rotate", json={"grace_hours": 2 / 3600})
    assert chat_as(server, first).status_code == 200
    wait_until(lambda: chat_as(server, first).status_code == 401, 15, "the grace period to end")


def test_a_key_expires_on_time(server: InProcessServer, admin: httpx.Client) -> None:
    name = unique("brief")
    body = create(admin, name=name, expires_in_hours=2 / 3600)
    assert TIME.match(body["expires_at"])
    assert chat_as(server, body["key"]).status_code == 200
    wait_until(lambda: chat_as(server, body["key"]).status_code == 401, 15, "the key to expire")
    assert admin.get(f"/admin/keys/{name}").json()["state"] == "expired"


def test_a_key_limited_to_a_deployment_and_a_quota(server: InProcessServer, admin: httpx.Client) -> None:
    deployment = server.deployment.name
    secret = create(admin, name=unique("limited"), deployments=[deployment], quota={"requests_per_minute": 1})["key"]
    assert chat_as(server, secret).status_code == 200
    second = chat_as(server, secret)
    assert_error(second, 429, "TooManyRequests")


# Deployments


def test_a_runtime_deployment_is_served_changed_and_removed(
    server: InProcessServer, admin: httpx.Client, tmp_path: Path
) -> None:
    name = unique("extra")
    model = fake_model(tmp_path)
    table = {"model": model, "engine": "fake", "engine_options": {"text": "from the database"}}
    put = admin.put(f"/admin/deployments/{name}", json=table)
    assert put.status_code == 201, put.text
    body = put.json()
    schema.RuntimeDeployment.model_validate(body)
    assert body["config"] == table and body["source"] == "runtime" and body["expires_at"] is None
    assert body["created_by"] == "key-1"
    models = [m["id"] for m in admin.get("/v1/models").json()["data"]]
    assert name in models
    wait_until(lambda: chat_as(server, KEY, name).status_code == 200, 15, "the deployment to load")
    assert chat_as(server, KEY, name).json()["choices"][0]["message"]["content"] == "from the database"
    changed = admin.put(f"/admin/deployments/{name}", json={**table, "engine_options": {"text": "changed"}})
    assert changed.status_code == 200, changed.text
    wait_until(
        lambda: chat_as(server, KEY, name).json()["choices"][0]["message"]["content"] == "changed",
        15,
        "the change to apply",
    )
    listed = admin.get("/admin/deployments")
    assert listed.status_code == 200
    schema.ServedDeploymentList.model_validate(listed.json())
    sources = {d["name"]: d["source"] for d in listed.json()["data"]}
    assert sources[server.deployment.name] == "file" and sources[name] == "runtime"
    one = admin.get(f"/admin/deployments/{name}")
    assert one.status_code == 200 and one.json()["config"]["engine_options"] == {"text": "changed"}
    deleted = admin.delete(f"/admin/deployments/{name}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert name not in [m["id"] for m in admin.get("/v1/models").json()["data"]]
    assert_error(chat_as(server, KEY, name), 404, "NotFound")
    assert_error(admin.get(f"/admin/deployments/{name}"), 404, "NotFound", param=None)
    again = admin.delete(f"/admin/deployments/{name}")
    assert_error(again, 404, "NotFound", param=None)
    assert again.json()["error"]["message"] == f"there is no runtime deployment named {name!r}"


def test_the_files_deployments_are_declarative(server: InProcessServer, admin: httpx.Client, tmp_path: Path) -> None:
    name = server.deployment.name
    put = admin.put(f"/admin/deployments/{name}", json={"model": fake_model(tmp_path), "engine": "fake"})
    assert_error(put, 409, "Conflict", param=None)
    assert put.json()["error"]["message"] == (
        f"deployment {name!r} is declared by the server's configuration (its deployments file or --model), "
        "not at runtime; change it there"
    )
    delete = admin.delete(f"/admin/deployments/{name}")
    assert_error(delete, 409, "Conflict", param=None)
    assert delete.json()["error"]["message"] == (
        f"deployment {name!r} is declared by the server's configuration (its deployments file or --model), "
        "not at runtime; remove it there"
    )


@pytest.mark.parametrize(
    "table, param, message",
    [
        ({"engine": "fake"}, "model", "model is required"),
        (
            {"model": "MODEL", "engine": "fake", "slots": 0},
            "slots",
            "slots: Input should be greater than or equal to 1",
        ),
        ({"model": "MODEL", "engine": "fake", "colour": "red"}, "colour", "colour: Extra inputs are not permitted"),
        ({"model": "MODEL", "engine": "fake", "name": "other"}, "name", None),
        ({"model": "MODEL", "engine": "fake", "expires_in_hours": 0}, "expires_in_hours", None),
        (
            {"model": "MODEL", "engine": "fake", "engine_options": {"speed": 1}},
            "engine_options",
            "engine_options: fake option 'speed': Extra inputs are not permitted",
        ),
        ({"model": "/no/such/model.gguf", "engine": "fake"}, "model", None),
    ],
)
def test_a_bad_deployment_is_a_400_naming_the_field_and_nothing_is_written(
    admin: httpx.Client, tmp_path: Path, table: dict[str, Any], param: str, message: str | None
) -> None:
    name = unique("bad")
    if table.get("model") == "MODEL":
        table = {**table, "model": fake_model(tmp_path)}
    response = admin.put(f"/admin/deployments/{name}", json=table)
    error = assert_error(response, 400, "invalid_request", param=param)["error"]
    if message is not None:
        assert error["message"] == message
    assert_error(admin.get(f"/admin/deployments/{name}"), 404, "NotFound")
    refused = audit_rows(admin, target=name)
    assert [(r["action"], r["outcome"], r["status"]) for r in refused] == [("deployments.put", "refused", 400)]


def test_a_temporary_deployment_shows_its_expiry_and_then_goes(
    server: InProcessServer, admin: httpx.Client, tmp_path: Path
) -> None:
    name = unique("temp")
    put = admin.put(
        f"/admin/deployments/{name}",
        json={"model": fake_model(tmp_path), "engine": "fake", "expires_in_hours": 3 / 3600},
    )
    assert put.status_code == 201, put.text
    expires = put.json()["expires_at"]
    assert TIME.match(expires)
    listed = {d["name"]: d for d in admin.get("/admin/deployments").json()["data"]}
    assert listed[name]["expires_at"] == expires
    health = admin.get("/health").json()
    assert name in health["deployments"]
    assert health["expires"] == {name: expires}
    wait_until(lambda: name not in [m["id"] for m in admin.get("/v1/models").json()["data"]], 20, "the expiry")
    assert name not in admin.get("/health").json()["deployments"]
    expired = audit_rows(admin, target=name, action="deployments.expire")
    assert [(r["actor"], r["outcome"]) for r in expired] == [("aimi", "ok")]


# Audit


def test_every_admin_change_is_an_audit_row_without_secrets(server: InProcessServer, admin: httpx.Client) -> None:
    name = unique("audited")
    first = create(admin, name=name, scopes=["inference", "metrics"])["key"]
    second = admin.post(f"/admin/keys/{name}/rotate", json={"grace_hours": 1}).json()["key"]
    admin.post(f"/admin/keys/{name}/revoke")
    admin.post(f"/admin/keys/{name}/revoke")  # refused: already revoked
    rows = audit_rows(admin, target=name)
    assert [(r["action"], r["outcome"], r["status"]) for r in rows] == [
        ("keys.revoke", "refused", 409),
        ("keys.revoke", "ok", 200),
        ("keys.rotate", "ok", 200),
        ("keys.create", "ok", 201),
    ]
    for row in rows:
        assert row["actor"] == "key-1"
        assert row["client"] == "127.0.0.1"
        assert TIME.match(row["time"])
        assert row["request_id"]
    assert rows[3]["detail"] == {"scopes": ["inference", "metrics"]}
    assert rows[2]["detail"] == {"grace_hours": 1}
    assert rows[0]["detail"] == {"error": f"the managed key {name!r} is already revoked"}
    text = json.dumps(rows)
    assert first not in text and second not in text and KEY not in text


def test_the_audit_log_filters_and_limits(admin: httpx.Client) -> None:
    name = unique("filtered")
    create(admin, name=name)
    assert [r["target"] for r in audit_rows(admin, action="keys.create", limit="1")] == [name]
    assert audit_rows(admin, since="2999-01-01") == []
    for query, param in [
        ({"limit": "0"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"since": "yesterday"}, "since"),
        ({"colour": "red"}, "colour"),
    ]:
        assert_error(admin.get("/admin/audit", params=query), 400, "invalid_request", param=param)


def test_an_unreachable_database_is_a_503_and_inference_goes_on() -> None:
    with server_on("postgresql://postgres@127.0.0.1:1/nowhere") as down, down.client() as admin:
        for response in (
            admin.post("/admin/keys", json={"name": "never"}),
            admin.get("/admin/keys"),
            admin.get("/admin/audit"),
        ):
            assert_error(response, 503, "ServiceUnavailable", param=None)
            assert response.json()["error"]["message"] == "the control plane's database is unreachable; retry shortly"
            assert response.headers["retry-after"] == "5"
        assert chat_as(down, KEY).status_code == 200


def test_a_token_with_the_admin_scope_manages_keys_and_is_audited_as_its_subject(tmp_path: Path) -> None:
    oid = "5b3a0b0e-1111-4222-8333-944445555666"
    admins = AuthConfig.model_validate(
        {"oidc": {"grants": [{"claim": "roles", "value": "Aimi.Admin", "scopes": ["admin"]}]}}
    )
    with (
        running_issuer() as issuer,
        in_process({"oidc_issuer": [issuer.url], "database_url": f"sqlite:///{tmp_path / 'aimi.db'}"}) as server,
    ):
        runtime = runtime_of(server.app)
        runtime.tokens.policy = token_policy(runtime.settings, admins)
        as_admin = {"authorization": f"Bearer {issuer.token(roles=['Aimi.Admin'])}"}
        made = httpx.post(f"{server.url}/admin/keys", json={"name": "by-token"}, headers=as_admin, timeout=30)
        assert made.status_code == 201, made.text
        assert made.json()["created_by"] == f"token:{oid}"
        rows = httpx.get(f"{server.url}/admin/audit", headers=as_admin, timeout=30).json()["data"]
        assert [(r["actor"], r["action"], r["target"]) for r in rows] == [(f"token:{oid}", "keys.create", "by-token")]
        plain = {"authorization": f"Bearer {issuer.token()}"}
        refused = httpx.get(f"{server.url}/admin/keys", headers=plain, timeout=30)
        assert_error(refused, 403, "Forbidden", message=f"token '{oid}' lacks the 'admin' scope")


def test_a_stored_deployment_that_cannot_be_built_is_skipped_and_said_once(
    server: InProcessServer, admin: httpx.Client, database: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = unique("broken")
    moment = datetime.now(UTC)
    engine = connect(database)
    try:
        with engine.begin() as connection:  # as another version, or a model since removed, could leave it
            connection.execute(
                runtime_deployments.insert().values(
                    name=broken,
                    config=json.dumps({"model": str(tmp_path / "gone.gguf"), "engine": "fake"}),
                    created_at=moment,
                    updated_at=moment,
                    created_by="test",
                )
            )
    finally:
        engine.dispose()
    wait_until(lambda: f"runtime deployment {broken} cannot be served" in caplog.text, 15, "the refusal")
    other = unique("fine")
    assert (
        admin.put(f"/admin/deployments/{other}", json={"model": fake_model(tmp_path), "engine": "fake"}).status_code
        == 201
    )
    served = [d["name"] for d in admin.get("/admin/deployments").json()["data"]]
    assert other in served and broken not in served
    assert caplog.text.count(f"runtime deployment {broken} cannot be served") == 1
    assert admin.delete(f"/admin/deployments/{other}").status_code == 204
    assert admin.delete(f"/admin/deployments/{broken}").status_code == 204
