"""The control plane: keeps what the engine serves equal to what the registry wants.

The registry (a database) is the source of truth for which model versions should be loaded;
this loop applies it to the ``ModelManager`` at start-up and every ``reconcile_interval_s``,
so a model added with the CLI — or by another server on the same PostgreSQL — is picked up,
and a restarted server loads again what was loaded. Observed states are written back.

Serving routes (``registry.routes``: which versions serve a plain model name, with weights)
are part of the same poll: each reconcile hands the routes in force to the engine, so a
promotion, canary or rollback made by any process reaches every server's next request within
``reconcile_interval_s``, and at once on the server that made it.

Registration goes through ``provision.registration`` (validation, the registry's own copy of
the files, a trial load), as it does from the CLI. Every load is logged at INFO when it starts
and when it ends, with its time, and so is the moment every model of the start-up is served.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aimass.config import Settings
from aimass.engine.deployment import FAILED, LOADING, READY, Deployment, Supervision
from aimass.engine.manager import ModelManager
from aimass.errors import Unavailable
from aimass.provision import registration
from aimass.registry import models as registry
from aimass.registry import routes as routing
from aimass.spec import ModelSpec

log = logging.getLogger("aimass.control")


def supervision_from(settings: Settings) -> Supervision:
    return Supervision(
        in_process=settings.worker_mode == "inprocess",
        cluster=settings.cluster,
        load_timeout_s=settings.load_timeout_s,
        backoff_s=settings.restart_backoff_s,
        backoff_max_s=settings.restart_backoff_max_s,
        max_restarts=settings.max_restarts,
        window_s=settings.restart_window_s,
        max_request_rows=settings.max_request_rows,
    )


class ControlPlane:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.url = settings.resolved_database_url
        self.manager = ModelManager(supervision_from(settings), on_state=self._state_changed)
        self._loading: dict[tuple[str, int], asyncio.Task] = {}
        self._tasks: set[asyncio.Task] = set()
        self._loop_task: asyncio.Task | None = None
        self.wanted: set[tuple[str, int]] = set()

    async def start(self) -> None:
        started = time.monotonic()
        await self.reconcile()
        initial = dict(self._loading)
        log.info("%d model version(s) to load", len(initial))
        if initial:
            self._track(asyncio.create_task(self._report_startup(initial, started)))
        self._loop_task = asyncio.create_task(self._loop())

    async def _report_startup(
        self, loads: dict[tuple[str, int], asyncio.Task], started: float
    ) -> None:
        """One line when the start-up loads are over: all served, or which ones failed (a load
        cancelled by a stop during start-up counts as not ready)."""
        outcomes = await asyncio.gather(*loads.values(), return_exceptions=True)
        failed = [
            f"{name}:{version}"
            for (name, version), d in zip(loads, outcomes, strict=True)
            if not isinstance(d, Deployment) or d.state != READY
        ]
        took = time.monotonic() - started
        if failed:
            log.warning(
                "%d of %d model version(s) ready after %.1f s; not ready: %s",
                len(loads) - len(failed),
                len(loads),
                took,
                ", ".join(failed),
            )
        else:
            log.info("all %d model version(s) ready in %.1f s", len(loads), took)

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
        for task in list(self._loading.values()):
            task.cancel()
        await self.manager.shutdown()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reconcile_interval_s)
            try:
                await self.reconcile()
            except Exception:  # the database may be briefly locked or unreachable
                log.exception("reconcile failed; retrying")

    async def reconcile(self) -> None:
        entries = await asyncio.to_thread(registry.list_models, self.url)
        routes = await asyncio.to_thread(routing.current_routes, self.url)
        self.manager.set_routes({name: route.weights for name, route in routes.items()})
        wanted = {e.spec.key: e.spec for e in entries if e.desired == registry.LOADED}
        self.wanted = set(wanted)
        for key, spec in wanted.items():
            dep = self.manager.find(*key)
            if (dep is None or dep.spec != spec) and key not in self._loading:
                self._start_load(spec)
        for dep in self.manager.deployments():
            if dep.spec.key not in wanted and dep.spec.key not in self._loading:
                await self.manager.unload(*dep.spec.key)

    def _start_load(self, spec: ModelSpec) -> asyncio.Task:
        task = asyncio.create_task(self._load_logged(spec))
        self._loading[spec.key] = task
        task.add_done_callback(lambda _t: self._loading.pop(spec.key, None))
        return task

    async def register(
        self,
        spec: ModelSpec,
        *,
        load: bool,
        replace: bool = False,
        update: bool = False,
        copy: bool = True,
    ) -> registry.ModelEntry:
        """Validate and add a version to the registry (and load it, if asked); see
        ``provision.registration`` for ``replace``, ``update`` and ``copy``."""
        done = await registration.register(
            self.settings, spec, load=load, replace=replace, update=update, copy=copy
        )
        if load:
            await self.load(done.entry.spec)
        return done.entry

    async def entries(self, name: str | None = None) -> list[registry.ModelEntry]:
        return await asyncio.to_thread(registry.list_models, self.url, name)

    async def entry(self, name: str, version: int | None = None) -> registry.ModelEntry:
        return await asyncio.to_thread(registry.get_model, self.url, name, version)

    async def remove(self, name: str, version: int | None) -> list[int]:
        """Forget a model (or one version of it), then unload it: in that order, or the
        reconcile loop may load it again from the registry while it is being unloaded."""
        versions = await asyncio.to_thread(registry.remove_model, self.url, name, version)
        self.wanted -= {(name, v) for v in versions}
        for dep in self.manager.deployments():
            if dep.spec.name == name and version in (None, dep.spec.version):
                await self.manager.unload(name, dep.spec.version)
        return versions

    async def load(self, spec: ModelSpec) -> Deployment:
        """Mark a registered version loaded and load it now."""
        await asyncio.to_thread(
            registry.set_desired, self.url, spec.name, spec.version, registry.LOADED
        )
        self.wanted.add(spec.key)
        running = self._loading.get(spec.key)
        if running is not None:
            await asyncio.shield(running)
        return await self._load_logged(spec)

    async def _load_logged(self, spec: ModelSpec) -> Deployment:
        """``manager.load`` with a log line when a load starts and when it ends."""
        current = self.manager.find(*spec.key)
        if current is not None and current.spec == spec and current.state != FAILED:
            return await self.manager.load(spec)  # already there (or loading): nothing to log
        label = f"model {spec.name!r} version {spec.version}"
        log.info("loading %s (runtime %s, %d replica(s))", label, spec.runtime, spec.replicas)
        started = time.monotonic()
        dep = await self.manager.load(spec)
        took = time.monotonic() - started
        if dep.state == READY:
            log.info("%s ready in %.1f s", label, took)
        else:
            log.error("%s failed to load after %.1f s: %s", label, took, dep.last_error)
        return dep

    async def unload(self, name: str, version: int | None) -> list[int]:
        versions = await asyncio.to_thread(
            registry.set_desired, self.url, name, version, registry.UNLOADED
        )
        self.wanted -= {(name, v) for v in versions}
        loaded = [d.spec.version for d in self.manager.deployments() if d.spec.name == name]
        for v in versions:
            if v in loaded:
                await self.manager.unload(name, v)
        return versions

    async def routes(self) -> dict[str, routing.Route]:
        """The route in force of every model name that has one."""
        return await asyncio.to_thread(routing.current_routes, self.url)

    async def route_history(self, name: str) -> list[routing.Route]:
        await self.entry(name)  # NotFound for a name that is not registered
        return await asyncio.to_thread(routing.history, self.url, name)

    async def set_route(self, name: str, weights: dict) -> routing.Route:
        """Route ``name``'s plain requests by ``weights`` (version to percent). Every version
        with a positive weight is loaded first, and the route changes only once they all
        serve: a version that fails to load is a 503 and the route stays as it was."""
        specs = await asyncio.to_thread(routing.routed_specs, self.url, name, weights)
        for spec in specs:
            dep = await self.load(spec)
            if dep.state != READY:
                raise Unavailable(
                    f"model {name!r} version {spec.version} failed to load, so the route "
                    f"is unchanged: {dep.last_error}"
                )
        route = await asyncio.to_thread(routing.set_route, self.url, name, weights)
        await self.reconcile()
        log.info("model %r now routed %s", name, route.describe())
        return route

    async def promote(self, name: str, version: int) -> routing.Route:
        """Make ``version`` the one that serves ``name`` (loaded first if it is not)."""
        return await self.set_route(name, {version: routing.TOTAL})

    async def rollback(self, name: str) -> routing.Route:
        """Back to the route before the current one, at once: while a version it names is
        loading again, its share goes to the others (``ModelManager``)."""
        await self.entry(name)  # NotFound for a name that is not registered
        route = await asyncio.to_thread(routing.rollback, self.url, name)
        await self.reconcile()
        log.info("model %r rolled back to %s", name, route.describe())
        return route

    async def index(self) -> list[dict]:
        """Every registered version with its state as the repository extension names them."""
        entries = await asyncio.to_thread(registry.list_models, self.url)
        out = []
        for entry in entries:
            dep = self.manager.find(*entry.spec.key)
            if dep is None:
                state, reason = "UNAVAILABLE", entry.last_error or "unloaded"
            else:
                state = {READY: "READY", LOADING: "LOADING"}.get(dep.state, "UNAVAILABLE")
                reason = dep.last_error or ""
            out.append(
                {
                    "name": entry.spec.name,
                    "version": str(entry.spec.version),
                    "state": state,
                    "reason": reason,
                }
            )
        return out

    def ready(self) -> bool:
        """Whether a load balancer should send this server traffic: no version meant to be
        loaded is still loading, and, with ``strict_readiness``, every one of them serves.
        Without it a failed version does not count: the others still serve, and its own
        ready endpoint, ``models list`` and ``aimass_replicas_up`` say it failed."""
        done = (READY,) if self.settings.strict_readiness else (READY, FAILED)
        for key in self.wanted:
            dep = self.manager.find(*key)
            if dep is None or dep.state not in done:
                return False
        return True

    def _state_changed(self, dep: Deployment) -> None:
        task = asyncio.ensure_future(
            asyncio.to_thread(
                registry.set_state,
                self.url,
                dep.spec.name,
                dep.spec.version,
                dep.state.value,
                dep.last_error,
            )
        )
        self._track(task)

    def _track(self, task: asyncio.Future) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
