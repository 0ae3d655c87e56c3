"""The models this server is serving, by name and version; usable without HTTP.

Requests that name no version follow the model's route when it has one (``set_routes``: the
control plane hands over the registry's routes): a weighted random choice per request among
the routed versions that are ready, so a 10 % canary gets one request in ten. A routed version
that is not ready (loading, failed, not loaded) gives its share to the others, with a log line
when that starts and ends; when none is ready, or the model has no route, the newest ready
version serves, so a user who loads a new version alongside the old one moves traffic when the
new one is up, and unloading it moves traffic back.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping

from aimass.engine.deployment import FAILED, LOADING, READY, Deployment, Supervision
from aimass.errors import NotFound, Unavailable
from aimass.spec import ModelSpec

log = logging.getLogger("aimass.engine.routes")


class ModelManager:
    def __init__(
        self,
        supervision: Supervision | None = None,
        on_state: Callable[[Deployment], None] | None = None,
        rng: random.Random | None = None,
    ):
        self.supervision = supervision or Supervision()
        self._on_state = on_state
        self._deployments: dict[tuple[str, int], Deployment] = {}
        self._locks: dict[tuple[str, int], asyncio.Lock] = {}
        self._routes: dict[str, dict[int, int]] = {}
        self._unready: dict[str, tuple[int, ...]] = {}
        """Per routed name, the routed versions not ready at its last request (for the log)."""
        self._rng = rng or random.Random()
        """Picks a routed version per request; tests may pass a seeded one."""

    def set_routes(self, routes: Mapping[str, Mapping[int, int]]) -> None:
        """The routes in force, by model name (version to weight in percent); replaces all."""
        self._routes = {name: dict(weights) for name, weights in routes.items()}
        self._unready = {n: v for n, v in self._unready.items() if n in self._routes}

    def route(self, name: str) -> dict[int, int] | None:
        return self._routes.get(name)

    def deployments(self) -> list[Deployment]:
        return sorted(self._deployments.values(), key=lambda d: d.spec.key)

    def resolve(self, name: str, version: int | None) -> tuple[str, int | None]:
        """``(name, version)`` as the registry knows it: an ``alias`` (a fine-tuned model's
        ``ft:...`` name) becomes the version it names; anything else is returned as it is."""
        if version is None and not any(d.spec.name == name for d in self._deployments.values()):
            for dep in self._deployments.values():
                if dep.spec.alias == name:
                    return dep.spec.name, dep.spec.version
        return name, version

    def find(self, name: str, version: int) -> Deployment | None:
        return self._deployments.get((name, version))

    def get(self, name: str, version: int | None = None, *, choose: bool = True) -> Deployment:
        """The deployment to serve a request; NotFound or Unavailable say why there is none.

        For a routed name, ``choose`` picks a version by weight (a request); without it the
        version with the largest weight answers (metadata, readiness: the same every time)."""
        if version is not None:
            dep = self._deployments.get((name, version))
            if dep is None:
                raise NotFound(f"model {name!r} version {version} is not loaded")
            return dep
        versions = [d for d in self.deployments() if d.spec.name == name]
        if not versions:
            raise NotFound(f"model {name!r} is not loaded")
        routed = self._routed(name)
        if routed and not choose:
            return max(routed, key=lambda pair: pair[1])[0]
        if routed:
            deps, weights = zip(*routed, strict=True)
            return self._rng.choices(deps, weights)[0]
        ready = [d for d in versions if d.state == READY]
        if ready:
            return ready[-1]
        if any(d.state == LOADING for d in versions):
            raise Unavailable(f"model {name!r} is loading")
        failed = [d for d in versions if d.state == FAILED]
        if failed:
            raise Unavailable(f"model {name!r} failed: {failed[-1].last_error}")
        raise Unavailable(f"model {name!r} is not ready")

    def primary(self, name: str) -> Deployment | None:
        """The version a plain ``name`` mostly goes to, for listings and for counting refusals:
        the routed ready version with the largest weight, else the newest ready one, else the
        newest one; None when no version of ``name`` is loaded."""
        routed = self._routed(name)
        if routed:
            return max(routed, key=lambda pair: pair[1])[0]
        versions = [d for d in self.deployments() if d.spec.name == name]
        ready = [d for d in versions if d.state == READY]
        return (ready or versions or [None])[-1]

    def _routed(self, name: str) -> list[tuple[Deployment, int]]:
        """The ready versions of ``name``'s route with a positive weight, and their weights."""
        route = self._routes.get(name)
        if not route:
            return []
        routed, unready = [], []
        for version, weight in route.items():
            dep = self._deployments.get((name, version))
            if weight <= 0:
                continue
            if dep is not None and dep.state == READY:
                routed.append((dep, weight))
            else:
                unready.append(version)
        self._note_unready(name, tuple(unready), bool(routed))
        return routed

    def _note_unready(self, name: str, unready: tuple[int, ...], served: bool) -> None:
        """Log when the set of routed versions that cannot take their share changes."""
        if self._unready.get(name, ()) == unready:
            return
        self._unready[name] = unready
        if not unready:
            log.info("every routed version of model %r is ready again", name)
        elif served:
            log.warning(
                "model %r: routed version(s) %s not ready; their share goes to the others",
                name,
                ", ".join(map(str, unready)),
            )
        else:
            log.warning(
                "model %r: no routed version is ready (%s); the newest ready version serves",
                name,
                ", ".join(map(str, unready)),
            )

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
