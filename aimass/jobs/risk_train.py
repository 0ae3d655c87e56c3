"""The ``risk_train`` job kind: train a risk model from the caller's transactions file, record
its evaluation beside the rules-only baseline's, register it as a new model version, and
promote it only if it beats the baseline and the serving version (AUC-PR on its validation
data).

The training itself (features replayed in time order, LightGBM and/or Isolation Forest,
thresholds) is ``aimass.scenarios.risk.train``, run in a low-priority child process. A bad
file or parameter ends the job ``failed`` with the error naming the row and column.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from aimass.config import Settings
from aimass.errors import Unprocessable
from aimass.files.store import FileStore
from aimass.jobs.kind import JobContext, JobFailed, Outcome
from aimass.jobs.process import run_child
from aimass.jobs.runner import JobRunner
from aimass.jobs.scenario_train import start_training
from aimass.protocols.jobs import Job
from aimass.protocols.risk import RiskModelCreate
from aimass.registry import evaluations
from aimass.registry import models as registry
from aimass.scenarios.risk.train import check_params
from aimass.serving.files import FilesService
from aimass.serving.pipeline import CallContext
from aimass.spec import ModelSpec

KIND = "risk_train"
METRIC = "auc_pr"


async def create(
    runner: JobRunner, files: FilesService, ctx: CallContext, req: RiskModelCreate
) -> Job:
    """Check ``req`` (parameters, files the caller may read) and queue its training job."""
    check_params(req.hyperparameters)
    return await start_training(runner, files, ctx, KIND, req, ("training_file", "validation_file"))


class RiskTrainKind:
    name = KIND
    initial_status = "queued"

    def __init__(self, files: FileStore, settings: Settings) -> None:
        self.files, self.settings = files, settings
        self.url = settings.resolved_database_url

    async def run(self, job: JobContext) -> Outcome:
        params = job.params
        await job.status("running")
        train = await self._fetch(job, params["training_file"], "train.dat")
        valid = "-"
        if params.get("validation_file"):
            valid = str(await self._fetch(job, params["validation_file"], "valid.dat"))
        out = job.workdir / "model"
        shutil.rmtree(out, ignore_errors=True)
        hyper = json.dumps(params.get("hyperparameters") or {})
        argv = [sys.executable, "-m", "aimass.scenarios.risk.train", str(train), valid, hyper]
        await run_child(job, [*argv, str(out)])
        report = json.loads((job.workdir / "report.json").read_text())
        if "error" in report:
            raise JobFailed(report["error"], code="invalid_training_file")
        return Outcome("completed", await self._register(job, out, report))

    async def _fetch(self, job: JobContext, file_id: str, name: str) -> Path:
        record = await asyncio.to_thread(self.files.get, file_id)
        target = job.workdir / name

        def copy() -> None:
            with target.open("wb") as f:
                for chunk in self.files.read(record):
                    f.write(chunk)

        await asyncio.to_thread(copy)
        return target

    async def _register(self, job: JobContext, out: Path, report: dict) -> dict[str, Any]:
        name = job.params["name"]
        version = await asyncio.to_thread(registry.next_version, self.url, name)
        folder = self.settings.home / "models" / name / str(version)
        await asyncio.to_thread(shutil.copytree, out, folder, dirs_exist_ok=True)
        spec = ModelSpec(
            name=name,
            version=version,
            runtime="risk",
            source=str(folder),
            trust_pickle=True,
            description=f"risk model trained by job {job.id}",
        )
        await asyncio.to_thread(registry.add_model, self.url, spec)
        result: dict[str, Any] = {"model": name, "version": version, **report}
        metrics = report.get("metrics", {})
        if METRIC not in metrics:  # anomaly-only: nothing labelled to compare; promote if asked
            if job.params.get("auto_promote", True):
                await asyncio.to_thread(evaluations.routing.promote, self.url, name, version)
                result["promotion"] = {"promoted": True, "reason": "no labels: promoted as asked"}
            return result
        dataset = job.params.get("validation_file") or f"{job.id}:validation"
        await asyncio.to_thread(
            evaluations.record_evaluation, self.url, name, version, dataset, metrics
        )
        baseline = report["baseline"][METRIC]
        if metrics[METRIC] <= baseline:
            reason = f"not promoted: {METRIC} {metrics[METRIC]:g} does not beat the rules-only "
            result["promotion"] = {"promoted": False, "reason": reason + f"baseline {baseline:g}"}
        elif not job.params.get("auto_promote", True):
            result["promotion"] = {"promoted": False, "reason": "auto_promote is false"}
        else:
            try:
                decision = await asyncio.to_thread(
                    evaluations.promote_if_better, self.url, name, version, METRIC, 0.0,
                    dataset=dataset,
                )  # fmt: skip
            except Unprocessable as exc:  # the serving version was measured on other data
                result["promotion"] = {"promoted": False, "reason": f"not promoted: {exc}"}
            else:
                result["promotion"] = {"promoted": decision.promoted, "reason": decision.reason}
        return result
