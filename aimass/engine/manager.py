"""The models this server is serving, by name and version; usable without HTTP.

Requests that name no version go to the newest version that is ready, so a user who loads
a new version alongside the old one moves traffic when the new one is up, and unloading it
moves traffic back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aimass.engine.deployment import FAILED, LOADING, READY, Deployment, Supervision
from aimass.errors import NotFound, Unavailable
from aimass.spec import ModelSpec


class ModelManager:
    def __init__(
        self,
        supervision: Supervision | None = None,
        on_state: Callable[[Deployment], None] | None = None,
    ):
        self.supervision = supervision or Supervision()
        self._on_state = on_state
        self._deployments: dict[tuple[str, int], Deployment] = {}
        self._locks: dict[tuple[str, int], asyncio.Lock] = {}

    def deployments(self) -> list[Deployment]:
        return sorted(self._deployments.values(), key=lambda d: d.spec.key)

    def find(self, name: str, version: int) -> Deployment | None:
        return self._deployments.get((name, version))

    def get(self, name: str, version: int | None = None) -> Deployment:
        """The deployment to serve a request; NotFound or Unavailable say why there is none."""
        if version is not None:
            dep = self._deployments.get((name, version))
            if dep is None:
                raise NotFound(f"model {name!r} version {version} is not loaded")
            return dep
        versions = [d for d in self.deployments() if d.spec.name == name]
        if not versions:
            raise NotFound(f"model {name!r} is not loaded")
        ready = [d for d in versions if d.state == READY]
        if ready:
            return ready[-1]
        if any(d.state == LOADING for d in versions):
            raise Unavailable(f"model {name!r} is loading")
        failed = [d for d in versions if d.state == FAILED]
        if failed:
            raise Unavailable(f"model {name!r} failed: {failed[-1].last_error}")
        raise Unavailable(f"model {name!r} is not ready")

    async def load(self, spec: ModelSpec) -> Deployment:
        """Load a version; loading it again with a changed spec replaces the running one."""
        async with self._lock(spec.key):
            current = self._deployments.get(spec.key)
            if current is not None and current.spec == spec and current.state != FAILED:
                return current
            if current is not None:
                await current.stop()
            dep = Deployment(spec, self.supervision, self._on_state)
            self._deployments[spec.key] = dep
            await dep.start()
            return dep

    async def unload(self, name: str, version: int | None = None) -> list[int]:
        """Unload one version, or every version of ``name``; returns the versions unloaded."""
        keys = [k for k in self._deployments if k[0] == name and version in (None, k[1])]
        if not keys:
            raise NotFound(
                f"model {name!r}" + (f" version {version}" if version else "") + " is not loaded"
            )
        for key in keys:
            async with self._lock(key):
                dep = self._deployments.pop(key, None)
                if dep is not None:
                    await dep.stop()
        return [k[1] for k in keys]

    async def shutdown(self) -> None:
        await asyncio.gather(
            *(d.stop() for d in self._deployments.values()), return_exceptions=True
        )
        self._deployments.clear()

    def _lock(self, key: tuple[str, int]) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())
