"""``GET /health``: whether this server can take requests now."""

from __future__ import annotations

import math
import time

from starlette.requests import Request
from starlette.responses import Response

from aimi.auth.keys import principal_of
from aimi.runtime import runtime_of
from aimi.surfaces.json_response import JSONResponse


async def health(request: Request) -> Response:
    """200 when every deployment is ready (or unloaded until needed); 503 while one loads, while
    one's engine is restarting (Retry-After: until the restart is due), or when one failed for good
    (no Retry-After, unless another is coming back).

    Anyone may ask; a caller with a valid key also sees each deployment it may use, by name.
    """
    runtime = runtime_of(request.app)
    states = {d.name: d.state() for d in runtime.deployments}
    overall = "ok" if all(s in ("ready", "unloaded") for s in states.values()) else "loading"
    if runtime.classifiers.loading:  # content safety's models: no request before them
        overall = "loading" if overall == "ok" else overall
    retry_after: float | None = 5
    if "restarting" in states.values():
        overall = "restarting"
        now = time.monotonic()
        waits = [d.supervision.retry_after(now) for d in runtime.deployments if states[d.name] == "restarting"]
        retry_after = min((w for w in waits if w is not None), default=5)
    if "failed" in states.values():
        overall = "unhealthy"
        retry_after = retry_after if "restarting" in states.values() or "loading" in states.values() else None
    body: dict[str, object] = {"status": overall}
    principal = principal_of(request.scope)
    if principal is not None:
        body["deployments"] = {name: s for name, s in states.items() if principal.may_use(name)}
        expiring = runtime.control.expiring() if runtime.control is not None else {}
        if expiring:  # temporary runtime deployments, and when they go
            body["expires"] = {name: at for name, at in expiring.items() if principal.may_use(name)}
        body["quota"] = runtime.quotas.health().as_dict()
        ledger = runtime.ledger
        body["usage_ledger"] = {
            "state": "ok" if ledger.healthy else "unreachable",
            "pending": ledger.pending,
            "dropped": ledger.dropped,
        }
    if overall == "ok":
        return JSONResponse(body)
    headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after is not None else None
    return JSONResponse(body, status_code=503, headers=headers)
