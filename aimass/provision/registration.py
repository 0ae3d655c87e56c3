"""Registering a model version: validate it, take its files into the registry's keeping, record it.

The one way a user's model enters the registry, whichever way it comes (``aimass models add``,
``aimass serve --config``, ``POST /v1/admin/models``, the v2 load with a config), so every
entry point refuses the same bad models with the same messages and records the same digests.
Nothing is registered, and no file is left behind, unless every step passed:

1. an existing version is refused, unless ``replace`` (the explicit, audited override: files
   and spec may change) or ``update`` (a declarative config: the serving settings may change,
   the files may not — versions are immutable);
2. ``validate.check_files``: the files are of the runtime's format and fit the task;
3. ``validate.trial_load``: the model loads in a throwaway worker (errors name the user's
   paths, and a refused model costs no copy);
4. ``artifacts.stage``: the files are copied (or hard-linked, or referenced) and digested;
5. the files move into ``AIMASS_HOME/models/<name>/<version>/`` and the version is recorded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from aimass.config import Settings
from aimass.errors import Conflict, NotFound
from aimass.provision import artifacts, validate
from aimass.registry import models as registry
from aimass.spec import FILE_OPTIONS, ModelSpec

log = logging.getLogger("aimass.provision")


@dataclass(frozen=True)
class Registered:
    """The recorded version, and how its files were kept (``unchanged`` if nothing was)."""

    entry: registry.ModelEntry
    how: str


async def register(
    settings: Settings,
    spec: ModelSpec,
    *,
    load: bool = False,
    replace: bool = False,
    update: bool = False,
    copy: bool = True,
) -> Registered:
    """Validate ``spec``, keep its files and record it (marked loaded if ``load``)."""
    url = settings.resolved_database_url
    existing = await asyncio.to_thread(_find, url, spec)
    if existing is not None and not (replace or update):
        raise Conflict(
            f"model {spec.name!r} version {spec.version} is already registered; versions are "
            "immutable: register a new version, or replace this one explicitly "
            "(aimass models add --replace, POST /v1/admin/models?replace=true)"
        )
    await asyncio.to_thread(validate.check_files, spec)
    if existing is not None and update and not replace:
        kept = await asyncio.to_thread(_same_files, existing.spec, spec)
        if kept is not None:
            return await _update(settings, existing, kept, load)
    await _trial(settings, spec)
    staged = await asyncio.to_thread(
        artifacts.stage,
        spec,
        settings.home,
        copy=copy,
        link_min_bytes=settings.artifact_link_min_bytes,
    )
    try:
        await asyncio.to_thread(staged.commit)
        entry = await asyncio.to_thread(
            registry.add_model,
            url,
            staged.spec,
            load=load,
            replace=existing is not None,
            notes=existing.notes if existing is not None and not replace else None,
        )
    except BaseException:
        await asyncio.to_thread(staged.rollback)
        raise
    await asyncio.to_thread(staged.finish)
    where = staged.final or spec.source
    log.info("registered %s (files %s: %s)", _label(spec), staged.how, where)
    return Registered(entry, staged.how)


async def _update(
    settings: Settings, existing: registry.ModelEntry, kept: ModelSpec, load: bool
) -> Registered:
    """Same files as registered: record changed settings (after a trial load), or nothing."""
    url = settings.resolved_database_url
    if kept != existing.spec:
        await _trial(settings, kept)
        entry = await asyncio.to_thread(
            registry.add_model, url, kept, load=load, replace=True, notes=existing.notes
        )
        log.info("updated the settings of %s (its files are unchanged)", _label(kept))
        return Registered(entry, "unchanged")
    if load and existing.desired != registry.LOADED:
        await asyncio.to_thread(registry.set_desired, url, kept.name, kept.version, registry.LOADED)
        existing = await asyncio.to_thread(registry.get_model, url, kept.name, kept.version)
    return Registered(existing, "unchanged")


def _same_files(registered: ModelSpec, given: ModelSpec) -> ModelSpec | None:
    """``given`` served from the registered files, when its files have the same digests;
    None when the registered version recorded none (registered before digests were kept).
    Other files for a registered version are a Conflict: versions are immutable."""
    if not registered.sha256:
        return None
    digests = artifacts.pin(given, given.digests()).sha256
    if digests != registered.sha256:
        changed = sorted(
            k
            for k in digests.keys() | registered.sha256.keys()
            if digests.get(k) != registered.sha256.get(k)
        )
        raise Conflict(
            f"model {given.name!r} version {given.version} is registered with other files "
            f"({', '.join(changed)} differ from {given.source}); versions are immutable: give "
            "the new files a new version, or replace this one explicitly "
            "(aimass models add --replace, POST /v1/admin/models?replace=true)"
        )
    options = dict(given.options)
    for option in FILE_OPTIONS:
        if option in options and option in registered.options:
            options[option] = registered.options[option]
    return given.model_copy(
        update={"source": registered.source, "options": options, "sha256": registered.sha256}
    )


async def _trial(settings: Settings, spec: ModelSpec) -> None:
    timeout = settings.trial_load_timeout_s
    if timeout <= 0:
        return
    started = time.monotonic()
    log.info("trial load of %s in a throwaway worker", _label(spec))
    await validate.trial_load(spec, timeout)
    log.info("trial load of %s passed in %.1f s", _label(spec), time.monotonic() - started)


def _find(url: str, spec: ModelSpec) -> registry.ModelEntry | None:
    try:
        return registry.get_model(url, spec.name, spec.version)
    except NotFound:
        return None


def _label(spec: ModelSpec) -> str:
    return f"model {spec.name!r} version {spec.version}"
