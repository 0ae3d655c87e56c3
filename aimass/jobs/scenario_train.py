"""Training jobs of the scenario services (``recommend_train``, later ``forecast_train``): one
shape for every family.

A job copies its training file(s) from the Files API into its folder, runs the family's
training module (``python -m aimass.scenarios.<family>.train spec.json``) as a low-priority
child, then registers the artifact as a new version of the model (runtime ``<family>``),
records the version's evaluation beside the baseline's, and promotes it only if it beats the
baseline and the serving version on the same hold-out (``promote_if_better``). Otherwise the
version stays registered, not serving, and the job's result says why. A training file the child
cannot use ends the job ``failed`` with the child's message (line and column named).

Resuming: the registered version is checkpointed, so a retry after a crash never registers
twice; a crash before that trains again.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aimass.config import Settings
from aimass.errors import AimassError, NotFound
from aimass.files.store import FileStore
from aimass.jobs.kind import JobContext, JobFailed, Outcome
from aimass.jobs.process import run_child
from aimass.jobs.runner import JobRunner
from aimass.jobs.service import job_object
from aimass.protocols.jobs import Job
from aimass.registry import audit
from aimass.registry import models as registry
from aimass.registry.evaluations import promote_if_better, record_evaluation, serving_version
from aimass.serving.files import FilesService
from aimass.serving.pipeline import CallContext
from aimass.spec import ModelSpec


@dataclass(frozen=True)
class Family:
    """What differs between the scenario families."""

    name: str
    """``recommend``, ``forecast``: the job kind is ``<name>_train``, the runtime ``<name>``."""
    metric: str
    """The metric promotion compares (``{k}`` is replaced by the job's ``k``)."""
    lower_is_better: bool
    files: tuple[str, ...] = ()
    """Optional file parameters besides ``training_file`` (``items_file``...), passed on."""
    trust_pickle: bool = False


class ScenarioTrainKind:
    """A ``<family>_train`` job kind; see the module note."""

    initial_status = "queued"

    def __init__(self, family: Family, files: FileStore, settings: Settings) -> None:
        self.family, self.files, self.settings = family, files, settings
        self.name = f"{family.name}_train"
        self.url = settings.resolved_database_url

    async def run(self, job: JobContext) -> Outcome:
        params = job.params
        name = params["name"]
        version = job.checkpoint.get("version")
        if version is None:
            await job.status("running")
            result = await self._train(job)
            version = await asyncio.to_thread(self._register, job, name, result)
            await job.save_checkpoint({"version": version, "result": result})
        result = job.checkpoint["result"]
        decision = await asyncio.to_thread(self._decide, job, name, version, result)
        await job.event(decision["reason"], promoted=decision["promoted"])
        return Outcome("completed", {
            "model": f"{name}:{version}", "name": name, "version": version,
            "metrics": result["metrics"], "baseline": result["baseline"],
            "serving_metrics": result.get("serving"), **decision,
        })  # fmt: skip

    async def _train(self, job: JobContext) -> dict[str, Any]:
        params = job.params
        spec: dict[str, Any] = {
            "out": str(job.workdir / "out"),
            "hyperparameters": params.get("hyperparameters") or {},
            "training_file": str(await self._copy(params["training_file"], job, "training.csv")),
        }
        for field in self.family.files:
            if params.get(field):
                spec[field] = str(await self._copy(params[field], job, f"{field}.csv"))
        spec.update(await asyncio.to_thread(self.extra_inputs, job))
        compare = await asyncio.to_thread(self._serving_source, params["name"])
        if compare is not None:
            spec["compare"] = compare
        (job.workdir / "spec.json").write_text(json.dumps(spec))
        out = job.workdir / "out"
        shutil.rmtree(out, ignore_errors=True)
        argv = [sys.executable, "-m", f"aimass.scenarios.{self.family.name}.train", "spec.json"]
        try:
            await run_child(job, argv, threads=1)
        except JobFailed:
            refused = out / "error.json"
            if refused.exists():
                message = json.loads(refused.read_text())["message"]
                raise JobFailed(message, code="invalid_training_file") from None
            raise
        return json.loads((out / "result.json").read_text())

    def extra_inputs(self, job: JobContext) -> dict[str, Any]:
        """More inputs a family adds to the child's spec (files it writes in the job folder)."""
        return {}

    async def _copy(self, file_id: str, job: JobContext, filename: str) -> Path:
        record = await asyncio.to_thread(self.files.get, file_id)
        target = job.workdir / filename

        def copy() -> None:
            with open(target, "wb") as handle:
                for chunk in self.files.read(record):
                    handle.write(chunk)

        await asyncio.to_thread(copy)
        return target

    def _serving_source(self, name: str) -> str | None:
        """The artifact folder of the version serving ``name`` (to evaluate on the same
        hold-out), if one of this family serves."""
        version = serving_version(self.url, name)
        if version is None:
            return None
        try:
            entry = registry.get_model(self.url, name, version)
        except NotFound:
            return None
        if entry.spec.runtime != self.family.name or not Path(entry.spec.source).exists():
            return None
        return entry.spec.source

    def _register(self, job: JobContext, name: str, result: dict[str, Any]) -> int:
        version = registry.next_version(self.url, name)
        folder = self.settings.home / "scenarios" / self.family.name / name / str(version)
        shutil.rmtree(folder, ignore_errors=True)
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(job.workdir / "out" / "model", folder)
        spec = ModelSpec(
            name=name, version=version, runtime=self.family.name, source=str(folder),  # type: ignore[arg-type]
            trust_pickle=self.family.trust_pickle,
            description=f"trained by job {job.id} from {job.params['training_file']}",
        )  # fmt: skip
        notes = {"job": job.id, "training_file": job.params["training_file"],
                 "hyperparameters": result.get("params", {})}  # fmt: skip
        registry.add_model(self.url, spec, notes=notes)
        dataset = self._dataset(job)
        record_evaluation(self.url, name, version, dataset, result["metrics"])
        record_evaluation(self.url, name, version, f"{dataset}:baseline", result["baseline"])
        serving = serving_version(self.url, name)
        if result.get("serving") and serving is not None:
            record_evaluation(self.url, name, serving, dataset, result["serving"])
        return version

    def _dataset(self, job: JobContext) -> str:
        return f"{job.params['training_file']}:holdout"

    def _decide(
        self, job: JobContext, name: str, version: int, result: dict[str, Any]
    ) -> dict[str, Any]:
        metric = self.family.metric.format(k=result.get("k", ""))
        model, baseline = result["metrics"][metric], result["baseline"][metric]
        better = model < baseline if self.family.lower_is_better else model > baseline
        if not better:
            reason = (f"not promoted: {metric} {model:g} does not beat the baseline's "
                      f"{baseline:g} on the hold-out")  # fmt: skip
            return {"promoted": False, "reason": reason, "metric": metric}
        if not job.params.get("auto_promote", True):
            reason = (f"not promoted (auto_promote is false); {metric} {model:g}, "
                      f"baseline {baseline:g}")  # fmt: skip
            return {"promoted": False, "reason": reason, "metric": metric}
        try:
            decision = promote_if_better(self.url, name, version, metric, 0.0,
                                         dataset=self._dataset(job))  # fmt: skip
        except AimassError as exc:
            return {"promoted": False, "reason": f"not promoted: {exc}", "metric": metric}
        if decision.promoted:
            audit.append(
                self.url, actor=job.record.owner, action="model.promote",
                target=f"{name}:{version}", source=f"job {job.id}", result="ok",
            )  # fmt: skip
        return {"promoted": decision.promoted, "reason": decision.reason, "metric": metric}


async def start_training(
    runner: JobRunner, files: FilesService, ctx: CallContext, kind: str, body: Any,
    file_fields: tuple[str, ...],
) -> Job:  # fmt: skip
    """Check the caller may read each named file, then queue a ``kind`` job (the job object)."""
    owner = files.owner_filter(ctx.caller)
    for field in file_fields:
        file_id = getattr(body, field, None)
        if file_id is None:
            continue
        try:
            await asyncio.to_thread(files.store.get, file_id, owner)
        except NotFound:
            raise NotFound(f"no file with id {file_id!r}", param=field) from None
    key = ctx.caller.key
    record = await runner.submit(
        kind, f"job_{secrets.token_hex(12)}", (key.id if key else None, ctx.caller.actor),
        body.model_dump(mode="json", exclude_none=True),
    )  # fmt: skip
    return job_object(record)
