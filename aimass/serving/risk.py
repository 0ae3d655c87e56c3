"""The work behind /v1/risk, callable without HTTP: score an event (features, model, rules,
alert), the rules of a model, alerts and their acknowledgement (training jobs are made by
``aimass.jobs.risk_train.create``).

Feature state: each risk model's per-entity state lives in this process
(``aimass.scenarios.risk.features.FeatureState``, the code training replays) so that a score
needs no database read; it is loaded from ``risk_entities`` at the model's first score and
written **behind** (the entities an event changed are flushed every ``FLUSH_INTERVAL_S`` and at
a graceful stop). Write-behind, not write-through: a synchronous write per event would put a
database commit (milliseconds on SQLite, more on a remote PostgreSQL) on every score's path;
the price is that a crash (not a stop) loses at most the last interval's updates, which only
makes the next few events' window counts a little low. Alerts, by contrast, are committed
before the score answers: an alert the caller was told about is never lost. Both kinds of
write go through one writer thread (``serving.risk_writer``), which batches them, so no
database work runs on the event loop and concurrent alerts share a commit.

One server owns a model's state: several servers scoring the same model would each keep their
own window counts (docs/risk.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aimass.config import Settings
from aimass.errors import InvalidInput, NotFound
from aimass.protocols.risk import (
    RiskAlert,
    RiskAlertList,
    RiskRule,
    RiskRules,
    RiskScore,
    RiskScoreRequest,
    TopFeature,
)
from aimass.registry import risk as rows
from aimass.registry.jobs import unix
from aimass.scenarios.risk.features import FeatureConfig, FeatureState
from aimass.scenarios.risk.rules import ACTIONS, Rule, decide, parse_rules
from aimass.serving.pipeline import CallContext, Pipeline
from aimass.serving.risk_webhooks import WebhookSender, alert_object
from aimass.serving.risk_writer import RiskWriter

FLUSH_INTERVAL_S = 1.0
TOP_FEATURES = 5
RULES_TTL_S = 5.0
"""How long a server trusts its copy of a model's rules before reading them again."""
ALERT_LEVEL = "review"
"""Decisions at or above this one are persisted as alerts."""

log = logging.getLogger("aimass.risk")


@dataclass
class ModelState:
    """One model's live feature state and the entity keys changed since the last flush."""

    features: FeatureState
    dirty: set[str] = field(default_factory=set)


class RiskService:
    def __init__(self, pipeline: Pipeline, settings: Settings) -> None:
        self.pipeline = pipeline
        self.url = settings.resolved_database_url
        self._meta: dict[tuple[str, int], dict[str, Any]] = {}
        self._states: dict[str, ModelState] = {}
        self._loading: dict[str, asyncio.Lock] = {}
        self._rules: dict[str, tuple[float, list[Rule] | None]] = {}
        self._new_alert = asyncio.Condition()
        self._flusher: asyncio.Task | None = None
        self.webhooks = WebhookSender(self.url)
        self.writer = RiskWriter(self.url)

    async def start(self) -> None:
        self.writer.start()
        self._flusher = asyncio.create_task(self._flush_loop())
        await self.webhooks.start()

    async def stop(self) -> None:
        await self.webhooks.stop()
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush()
        await self.writer.stop()

    # ---- scoring ----------------------------------------------------------------------------

    async def score(self, ctx: CallContext, req: RiskScoreRequest) -> RiskScore:
        async with self.pipeline.call(ctx, req.model) as call:
            spec = call.deployment.spec
            if spec.runtime != "risk":
                raise InvalidInput(f"model {req.model!r} is not a risk model", param="model")
            meta = await self._model_meta(spec.name, spec.version, spec.source)
            state = await self._state(meta)
            event = req.event
            state.features.check(event)  # a bad event changes nothing
            state.dirty.update(state.features.observe(event))
            row = np.asarray(state.features.last, dtype=np.float32)
            out = await call.infer({"features": row[None]})
        score = float(out["score"][0])
        contrib = np.asarray(out["contrib"][0], dtype=np.float64)
        names = meta["names"]
        values: dict[str, Any] = {**event, **dict(zip(names, row.tolist(), strict=True))}
        values["score"] = score
        rules = await self._current_rules(spec.name, meta)
        decision, fired = decide(score, meta["thresholds"], rules, values)
        order = np.argsort(-np.abs(contrib))[:TOP_FEATURES]
        top = [
            TopFeature(name=names[i], value=float(row[i]), contribution=float(contrib[i]))
            for i in order
        ]
        alert_id = None
        if ACTIONS.index(decision) >= ACTIONS.index(ALERT_LEVEL):
            alert = await self.writer.add_alert(
                rows.NewAlert(spec.name, spec.version, decision, score, event, fired,
                              [t.model_dump() for t in top])
            )  # fmt: skip
            alert_id = alert.id
            self.webhooks.wake()
            async with self._new_alert:
                self._new_alert.notify_all()
        return RiskScore(
            model=spec.name, version=spec.version, score=score, decision=decision,
            rules=fired, top_features=top, alert_id=alert_id,
        )  # fmt: skip

    async def _model_meta(self, name: str, version: int, source: str) -> dict[str, Any]:
        meta = self._meta.get((name, version))
        if meta is None:
            text = await asyncio.to_thread((Path(source) / "risk.json").read_text)
            meta = self._meta[(name, version)] = json.loads(text)
            meta["source"] = source
            config = FeatureConfig.from_dict(meta["features"])
            described = json.dumps(config.as_dict(), sort_keys=True).encode()
            meta["config"] = config
            meta["state_key"] = f"{name}|{hashlib.sha256(described).hexdigest()[:16]}"
        return meta

    async def _state(self, meta: dict[str, Any]) -> ModelState:
        """The model's live state, loaded from the registry at first use. A version with other
        entity columns starts its own state under another key."""
        key = meta["state_key"]
        state = self._states.get(key)
        if state is not None:
            return state
        lock = self._loading.setdefault(key, asyncio.Lock())
        async with lock:
            if key not in self._states:
                saved = await asyncio.to_thread(rows.load_entities, self.url, key)
                if not saved:  # first use: the history the model was trained on
                    saved = await asyncio.to_thread(_trained_state, meta)
                features = FeatureState(meta["config"])
                for entity, data in saved.items():
                    features.load(entity, data)
                self._states[key] = ModelState(features)
        return self._states[key]

    async def flush(self) -> None:
        """Write every changed entity's state (write-behind; see the module note)."""
        for key, state in list(self._states.items()):
            if not state.dirty:
                continue
            changed, state.dirty = state.dirty, set()
            dumps = {k: state.features.dump(k) for k in changed}
            try:
                await self.writer.save_entities(key, dumps)
            except Exception:
                state.dirty |= changed  # tried again at the next flush
                log.exception("risk: could not write the feature state of %s", key)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            await self.flush()

    # ---- rules ------------------------------------------------------------------------------

    async def _current_rules(self, name: str, meta: dict[str, Any]) -> list[Rule]:
        """The model's latest rule revision (re-read every ``RULES_TTL_S``, so an edit made
        through another server applies here too), else the rules trained with the version."""
        cached = self._rules.get(name)
        now = time.monotonic()
        if cached is None or now - cached[0] > RULES_TTL_S:
            found = await asyncio.to_thread(rows.current_rules, self.url, name)
            cached = self._rules[name] = (now, None if found is None else parse_rules(found.rules))
        if cached[1] is not None:
            return cached[1]
        if "parsed_rules" not in meta:
            meta["parsed_rules"] = parse_rules(meta.get("rules", []))
        return meta["parsed_rules"]

    async def _serving_meta(self, ctx: CallContext, name: str) -> dict[str, Any]:
        dep = await self.pipeline.resolve(ctx, name)
        if dep.spec.runtime != "risk":
            raise InvalidInput(f"model {name!r} is not a risk model", param="name")
        return await self._model_meta(name, dep.spec.version, dep.spec.source)

    async def get_rules(self, ctx: CallContext, name: str) -> RiskRules:
        meta = await self._serving_meta(ctx, name)
        found = await asyncio.to_thread(rows.current_rules, self.url, name)
        if found is None:
            return RiskRules(model=name, revision=0, rules=meta.get("rules", []))
        return RiskRules(
            model=name, revision=found.revision, rules=[RiskRule(**r) for r in found.rules],
            updated_by=found.actor, updated_at=unix(found.created_at),
        )  # fmt: skip

    async def put_rules(self, ctx: CallContext, name: str, rules: list[RiskRule]) -> RiskRules:
        await self._serving_meta(ctx, name)
        raw = [r.model_dump() for r in rules]
        parsed = parse_rules(raw)
        found = await asyncio.to_thread(rows.put_rules, self.url, name, raw, ctx.caller.actor)
        self._rules[name] = (time.monotonic(), parsed)
        return RiskRules(
            model=name, revision=found.revision, rules=rules,
            updated_by=found.actor, updated_at=unix(found.created_at),
        )  # fmt: skip

    # ---- alerts -----------------------------------------------------------------------------

    async def alerts(
        self,
        model: str | None,
        decision: str | None,
        acked: bool | None,
        after: int,
        limit: int,
        order: str = "asc",
    ) -> RiskAlertList:
        found = await asyncio.to_thread(
            rows.alerts, self.url, model=model, decision=decision, acked=acked, after=after,
            limit=limit + 1, newest_first=order == "desc",
        )  # fmt: skip
        return RiskAlertList(data=[alert_object(a) for a in found[:limit]],
                             has_more=len(found) > limit)  # fmt: skip

    async def ack(self, ctx: CallContext, alert_id: int) -> RiskAlert:
        found = await asyncio.to_thread(rows.ack, self.url, alert_id, ctx.caller.actor)
        if found is None:
            raise NotFound(f"no alert with id {alert_id}", param="alert_id")
        return alert_object(found)

    async def follow(self, model: str | None, after: int, wait_s: float):
        """Alerts after id ``after`` as they come (an async iterator of lists; an empty list
        after ``wait_s`` without one, for a keep-alive)."""
        while True:
            found = await asyncio.to_thread(rows.alerts, self.url, model=model, after=after)
            if found:
                after = found[-1].id
                yield [alert_object(a) for a in found]
                continue
            async with self._new_alert:
                try:
                    async with asyncio.timeout(wait_s):
                        await self._new_alert.wait()
                except TimeoutError:
                    yield []


def _trained_state(meta: dict[str, Any]) -> dict[str, Any]:
    path = Path(meta["source"]) / "state.json"
    return json.loads(path.read_text()) if path.exists() else {}
