"""``GET /health``: whether this server can take requests now."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from aimi.auth.keys import principal_of
from aimi.runtime import runtime_of
from aimi.surfaces.json_response import JSONResponse


async def health(request: Request) -> Response:
    """200 when every deployment is ready (or unloaded until needed); 503 while one loads or when
    one failed.

    Anyone may ask; a caller with a valid key also sees each deployment it may use, by name.
    """
    runtime = runtime_of(request.app)
    states = {d.name: d.state() for d in runtime.deployments}
    overall = "ok" if all(s in ("ready", "unloaded") for s in states.values()) else "loading"
    if runtime.classifiers.loading:  # content safety's models: no request before them
        overall = "loading" if overall == "ok" else overall
    if "failed" in states.values():
        overall = "unhealthy"
    body: dict[str, object] = {"status": overall}
    principal = principal_of(request.scope)
    if principal is not None:
        body["deployments"] = {name: s for name, s in states.items() if principal.may_use(name)}
        body["quota"] = runtime.quotas.health().as_dict()
        ledger = runtime.ledger
        body["usage_ledger"] = {
            "state": "ok" if ledger.healthy else "unreachable",
            "pending": ledger.pending,
            "dropped": ledger.dropped,
        }
    if overall == "ok":
        return JSONResponse(body)
    return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})
