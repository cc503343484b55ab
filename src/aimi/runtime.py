"""What one running aimi is made of, built once by ``create_app`` and typed.

Everything a request needs besides itself hangs here: the deployments, the keys and trusted token issuers, the content
safety classifiers, the quota gate, the usage ledger and the metrics, and the background tasks
the server keeps. The app holds exactly one :class:`Runtime` (``app.state.runtime``); nothing
else is kept on the app, and no module keeps state of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from aimi.auth.keys import ApiKey, KeyRing
from aimi.auth.tokens import TokenVerifier
from aimi.control.plane import ControlPlane
from aimi.deployments.build import DeploymentSpec
from aimi.deployments.registry import Deployments, Endpoint
from aimi.quota.gate import Quotas
from aimi.safety.registry import Classifiers
from aimi.settings import Settings
from aimi.usage.ledger import Ledger
from aimi.usage.metrics import Metrics
from aimi.usage.store import LedgerStore

Served = tuple[list[DeploymentSpec], list[str | ApiKey] | None, list[Endpoint]]
"""What a server serves: the deployments, the keys (None: no auth) and the traffic-split endpoints."""


@dataclass
class Runtime:
    """One server's world. ``deployments`` and the key ring's verifier are swapped whole by a
    reload; everything else lives as long as the app."""

    settings: Settings
    deployments: Deployments
    keys: KeyRing
    tokens: TokenVerifier
    classifiers: Classifiers
    quotas: Quotas
    ledger: Ledger
    store: LedgerStore
    metrics: Metrics
    reloader: Callable[[], Served] | None = None
    control: ControlPlane | None = None
    """Managed keys and runtime deployments from the database; None when the server has no auth."""
    tracing: Any = None  # an OpenTelemetry TracerProvider, when traces are exported
    background: set[asyncio.Task[Any]] = field(default_factory=set)
    """Tasks the server runs beside requests (model loads, retirements, shadow requests); cancelled at shutdown."""

    def spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``work`` in the background for as long as the server runs."""
        task = asyncio.get_running_loop().create_task(work)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task


def runtime_of(app: Any) -> Runtime:
    """The runtime of a Starlette app built by ``create_app``."""
    runtime: Runtime = app.state.runtime
    return runtime
