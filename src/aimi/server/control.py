"""The admin API of the control plane: ``/admin/keys``, ``/admin/deployments`` and
``/admin/audit`` (the admin scope, as every ``/admin/`` path). Routes parse, call
:mod:`aimi.control` and encode; every change, done or refused, is an audit row."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy.exc
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from aimi.auth.keys import principal_of
from aimi.control import audit, deployments, keys
from aimi.control.audit import Actor, Entry
from aimi.control.plane import ControlPlane
from aimi.pipeline.validation import parse, parse_json_object
from aimi.protocol.errors import ApiError, invalid_request, service_unavailable
from aimi.runtime import Runtime, runtime_of
from aimi.surfaces.handlers import _json_only
from aimi.surfaces.json_response import JSONResponse

log = logging.getLogger(__name__)


def _control(runtime: Runtime) -> ControlPlane:
    if runtime.control is None:
        raise ApiError("NotFound", "this server runs without authentication (--no-auth): it has no control plane")
    return runtime.control


def _actor(request: Request) -> Actor:
    principal = principal_of(request.scope)
    client = request.client.host if request.client is not None else None
    if principal is None:
        name = "anonymous"
    else:  # a key by its name; a bearer token by its subject, marked so it cannot pass for a key
        name = principal.name if principal.kind == "key" else f"{principal.kind}:{principal.name}"
    return Actor(name, client, request.state.request_id)


async def _body(request: Request, optional: bool = False) -> dict[str, Any]:
    _json_only(request.headers.get("content-type"))
    raw = await request.body()
    if optional and not raw.strip():
        return {}
    return parse_json_object(raw)


async def _db(work: Callable[[], Any]) -> Any:
    """Run a database call in a thread; an unreachable database is a 503, never a 500."""
    try:
        return await asyncio.to_thread(work)
    except sqlalchemy.exc.IntegrityError:
        # Another replica wrote the same name between this one's check and its write.
        raise ApiError(
            "Conflict", "another request changed the same name at the same time; read it and retry"
        ) from None
    except sqlalchemy.exc.OperationalError as exc:
        log.warning("control plane database call failed: %s", getattr(exc, "orig", None) or exc.__class__.__name__)
        raise service_unavailable("the control plane's database is unreachable; retry shortly", 5) from None


async def _audited(
    request: Request, action: str, target: Callable[[], str | None], change: Callable[[], Awaitable[Response]]
) -> Response:
    """``change``'s response; when it is refused, the refusal's audit row (a change audits itself,
    in its own transaction)."""
    try:
        return await change()
    except ApiError as exc:
        runtime = runtime_of(request.app)
        entry = Entry(action, target(), outcome="refused", status=exc.status, detail={"error": exc.message})
        try:
            await asyncio.to_thread(audit.record_alone, runtime.store.engine, _actor(request), entry)
        except sqlalchemy.exc.SQLAlchemyError:
            log.warning("audit row of a refused %s not written: the database is unreachable", action)
        raise


# Keys


async def list_keys(request: Request) -> Response:
    runtime = runtime_of(request.app)
    _control(runtime)
    return JSONResponse({"object": "list", "data": await _db(lambda: keys.listing(runtime.store.engine))})


async def get_key(request: Request) -> Response:
    runtime = runtime_of(request.app)
    _control(runtime)
    name = request.path_params["name"]
    return JSONResponse(await _db(lambda: keys.get(runtime.store.engine, name)))


async def create_key(request: Request) -> Response:
    runtime = runtime_of(request.app)
    body: dict[str, Any] = {}

    async def change() -> Response:
        control = _control(runtime)
        body.update(await _body(request))
        wanted = parse(keys.KeyRequest, body)
        configured = control.keys.configured
        if configured is not None and wanted.name in configured.names():
            raise ApiError("Conflict", f"a key of the flags or the file is named {wanted.name!r}", param="name")
        unknown = sorted(
            set(wanted.deployments or ())
            - {d.name for d in runtime.deployments}
            - {e.name for e in runtime.deployments.endpoints}
        )
        if unknown:
            raise invalid_request(f"deployments: no deployment named {', '.join(map(repr, unknown))}", "deployments")
        view, secret = await _db(lambda: keys.create(runtime.store.engine, wanted, _actor(request)))
        await control.refresh()
        return JSONResponse({**view, "key": secret}, status_code=201)

    return await _audited(
        request, "keys.create", lambda: str(body.get("name"))[:64] if "name" in body else None, change
    )


async def rotate_key(request: Request) -> Response:
    runtime = runtime_of(request.app)
    name = request.path_params["name"]

    async def change() -> Response:
        control = _control(runtime)
        wanted = parse(keys.RotateRequest, await _body(request, optional=True))
        grace = wanted.grace_hours if wanted.grace_hours is not None else runtime.settings.key_rotation_grace_hours
        view, secret = await _db(lambda: keys.rotate(runtime.store.engine, name, grace, _actor(request)))
        await control.refresh()
        return JSONResponse({**view, "key": secret})

    return await _audited(request, "keys.rotate", lambda: name, change)


async def revoke_key(request: Request) -> Response:
    runtime = runtime_of(request.app)
    name = request.path_params["name"]

    async def change() -> Response:
        control = _control(runtime)
        parse_empty = await _body(request, optional=True)
        if parse_empty:
            raise invalid_request(
                f"revoke takes no fields; got {', '.join(sorted(parse_empty))}", sorted(parse_empty)[0]
            )
        view = await _db(lambda: keys.revoke(runtime.store.engine, name, _actor(request)))
        await control.refresh()
        return JSONResponse(view)

    return await _audited(request, "keys.revoke", lambda: name, change)


# Deployments


def _served(runtime: Runtime, control: ControlPlane) -> list[dict[str, Any]]:
    """Every deployment served now: the file's, then the runtime ones, with their state."""
    served = []
    for d in runtime.deployments:
        row = control.rows.get(d.name) if d.name not in control.file_names else None
        base = row if row is not None else {"name": d.name, "source": "file", "expires_at": None}
        served.append({**base, "engine": d.spec.engine if d.spec else None, "state": d.state()})
    return served


async def list_deployments(request: Request) -> Response:
    runtime = runtime_of(request.app)
    return JSONResponse({"object": "list", "data": _served(runtime, _control(runtime))})


async def get_deployment(request: Request) -> Response:
    runtime = runtime_of(request.app)
    name = request.path_params["name"]
    found = [d for d in _served(runtime, _control(runtime)) if d["name"] == name]
    if not found:
        raise ApiError("NotFound", f"there is no deployment named {name!r}")
    return JSONResponse(found[0])


def _declared(control: ControlPlane, runtime: Runtime, name: str, doing: str) -> None:
    if name in control.file_names:
        raise ApiError(
            "Conflict",
            f"deployment {name!r} is declared by the server's configuration (its deployments file or --model), "
            f"not at runtime; {doing} it there",
        )
    if name in {e.name for e in runtime.deployments.endpoints}:
        raise ApiError("Conflict", f"{name!r} names an endpoint of the deployments file")


async def put_deployment(request: Request) -> Response:
    runtime = runtime_of(request.app)
    name = request.path_params["name"]

    async def change() -> Response:
        control = _control(runtime)
        body = await _body(request)
        _declared(control, runtime, name, "change")
        entry, hours = deployments.check(name, body)
        await asyncio.to_thread(deployments.build, runtime.settings, entry, log.info)
        view, created = await _db(lambda: deployments.put(runtime.store.engine, entry, hours, _actor(request)))
        await control.refresh()
        return JSONResponse(view, status_code=201 if created else 200)

    return await _audited(request, "deployments.put", lambda: name, change)


async def delete_deployment(request: Request) -> Response:
    runtime = runtime_of(request.app)
    name = request.path_params["name"]

    async def change() -> Response:
        control = _control(runtime)
        _declared(control, runtime, name, "remove")
        await _db(lambda: deployments.delete(runtime.store.engine, name, _actor(request)))
        await control.refresh()
        return Response(status_code=204)

    return await _audited(request, "deployments.delete", lambda: name, change)


# Audit


def _moment(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise invalid_request(f"{name} must be an ISO 8601 date or time, not {value!r}", name) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def read_audit(request: Request) -> Response:
    """``GET /admin/audit?since=&until=&actor=&action=&target=&limit=``, newest first."""
    runtime = runtime_of(request.app)
    query = request.query_params
    unknown = sorted(set(query) - {"since", "until", "actor", "action", "target", "limit"})
    if unknown:
        raise invalid_request(f"unknown query parameter {unknown[0]!r}", unknown[0])
    text = query.get("limit", "100")
    if not text.isdigit() or not 1 <= int(text) <= audit.MAX_ROWS:
        raise invalid_request(f"limit must be a whole number from 1 to {audit.MAX_ROWS}, not {text!r}", "limit")
    since, until = _moment(query.get("since"), "since"), _moment(query.get("until"), "until")
    rows = await _db(
        lambda: audit.read(
            runtime.store.engine,
            since=since,
            until=until,
            actor=query.get("actor"),
            action=query.get("action"),
            target=query.get("target"),
            limit=int(text),
        )
    )
    return JSONResponse({"object": "list", "data": rows})


Handler = Callable[[Request], Awaitable[Response]]


def _route(path: str, handlers: dict[str, Handler]) -> Route:
    """One route for a path of several methods, so a 405's Allow lists them all."""

    async def dispatch(request: Request) -> Response:
        # Starlette answers HEAD wherever GET is allowed.
        return await handlers["GET" if request.method == "HEAD" else request.method](request)

    return Route(path, dispatch, methods=list(handlers))


def routes() -> list[BaseRoute]:
    """The control plane's routes."""
    return [
        _route("/admin/keys", {"GET": list_keys, "POST": create_key}),
        _route("/admin/keys/{name}", {"GET": get_key}),
        _route("/admin/keys/{name}/rotate", {"POST": rotate_key}),
        _route("/admin/keys/{name}/revoke", {"POST": revoke_key}),
        _route("/admin/deployments", {"GET": list_deployments}),
        _route(
            "/admin/deployments/{name}", {"GET": get_deployment, "PUT": put_deployment, "DELETE": delete_deployment}
        ),
        _route("/admin/audit", {"GET": read_audit}),
    ]
