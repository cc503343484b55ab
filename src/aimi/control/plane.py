"""The control plane of one server: every ``AIMI_CONTROL_REFRESH_SECONDS`` (and at once after an
admin change made here) it reads the managed keys and the runtime deployments from the database
and applies them, so every replica sharing the database agrees within one interval.

Keys are swapped into the key ring whole. Runtime deployments are merged with the file's and
applied through the reload machinery: unchanged deployments keep running, new ones load, removed
ones finish their requests first. While the database is unreachable the last keys and
deployments stay in force (a managed key's own expiry still holds: it is checked at each request).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aimi.auth.keys import ApiKey, KeyRing
from aimi.control import deployments
from aimi.control.keys import active
from aimi.deployments.build import DeploymentSpec
from aimi.deployments.config import DeploymentConfig
from aimi.settings import Settings
from aimi.usage.store import LedgerStore

log = logging.getLogger(__name__)

Apply = Callable[[list[DeploymentSpec]], Awaitable[None]]


class ControlPlane:
    """What the database adds to what the flags and the file say a server serves."""

    def __init__(self, settings: Settings, store: LedgerStore, keys: KeyRing, file_specs: Sequence[DeploymentSpec]):
        self.settings = settings
        self.store = store
        self.keys = keys
        self.file_specs = list(file_specs)
        self.rows: dict[str, dict[str, Any]] = {}
        """The runtime deployments served now, as :func:`aimi.control.deployments.view` shows them."""
        self._specs: dict[str, DeploymentSpec] = {}
        self._failed: dict[str, Any] = {}  # runtime deployments that could not be built, by their fields
        self._apply: Apply | None = None
        self._lock: asyncio.Lock | None = None
        self.healthy = True

    @property
    def file_names(self) -> frozenset[str]:
        return frozenset(spec.name for spec in self.file_specs)

    def expiring(self) -> dict[str, str]:
        """The temporary runtime deployments served now, and when each goes (ISO 8601)."""
        return {name: row["expires_at"] for name, row in self.rows.items() if row["expires_at"] is not None}

    def attach(self, apply: Apply) -> None:
        """Apply merged deployments with ``apply`` (the server's reload machinery) from now on."""
        self._apply = apply

    def served(self, file_specs: Sequence[DeploymentSpec]) -> list[DeploymentSpec]:
        """The file's deployments (``file_specs``, kept for the next refresh) and the runtime ones
        whose names the file does not take."""
        self.file_specs = list(file_specs)
        taken = self.file_names
        return [*self.file_specs, *(spec for name, spec in self._specs.items() if name not in taken)]

    def _read(self) -> tuple[list[ApiKey], list[dict[str, Any]]]:
        self.store.ensure()
        with self.store.engine.begin() as connection:
            removed = deployments.expire(connection)
            if removed:
                log.info("runtime deployment(s) expired: %s", ", ".join(removed))
            return active(connection), deployments.live(connection)

    async def refresh(self) -> None:
        """Read the database once and apply what changed."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            try:
                keys, rows = await asyncio.to_thread(self._read)
            except Exception as exc:  # SQLAlchemy's and the driver's errors alike: try again next time
                if self.healthy:
                    log.warning(
                        "control plane cannot read the database (%s); keeping the last keys and deployments",
                        getattr(exc, "orig", None) or exc.__class__.__name__,
                    )
                self.healthy = False
                return
            self.healthy = True
            self.keys.manage(keys)
            taken = self.file_names
            wanted = {row["name"]: row for row in rows if row["name"] not in taken}
            seen = {**{n: r["config"] for n, r in self.rows.items()}, **self._failed}
            if {n: r["config"] for n, r in wanted.items()} == seen:
                self.rows = {n: r for n, r in wanted.items() if n not in self._failed}  # an expiry may have moved
                return
            specs: dict[str, DeploymentSpec] = {}
            failed: dict[str, Any] = {}
            for name, row in wanted.items():
                kept = self.rows.get(name)
                if kept is not None and kept["config"] == row["config"] and name in self._specs:
                    specs[name] = self._specs[name]
                    continue
                if self._failed.get(name) == row["config"]:
                    failed[name] = row["config"]  # said once already; tried again when it changes
                    continue
                try:
                    entry = DeploymentConfig.model_validate({**row["config"], "name": name})
                    specs[name] = await asyncio.to_thread(deployments.build, self.settings, entry, log.info)
                except Exception as exc:
                    failed[name] = row["config"]
                    log.error("runtime deployment %s cannot be served: %s", name, getattr(exc, "message", exc))
            self._failed = failed
            self.rows = {name: row for name, row in wanted.items() if name in specs}
            self._specs = specs
            if self._apply is not None:
                await self._apply(self.served(self.file_specs))

    async def run(self) -> None:
        """Refresh now, then every ``control_refresh_seconds``, for as long as the server runs."""
        while True:
            await self.refresh()
            await asyncio.sleep(self.settings.control_refresh_seconds)
