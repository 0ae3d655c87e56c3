"""The ``fine_tune`` job kind: validate the files, train in a low-priority child, evaluate the
new version and the serving one side by side, register the new version (not promoted), and
promote it only when ``auto_promote`` asks and it wins.

Phases and what a resumed attempt (after kill -9 of the server) finds:

- ``validating_files``: the training (and validation) file is read and checked in a thread;
  an invalid line fails the job naming the line and ``training_file`` (``data.FileInvalid``).
- ``queued`` → ``running``: the child (``child.py``, nice 19) trains epoch by epoch; each
  epoch's state is a checkpoint (``job.checkpoint["checkpoints"]``), and a resumed attempt's
  child continues after the last one. A cancel kills the child (``run_child``).
- registration: the child's ``result.json`` is the evaluation; the new version is registered
  under the method's target name with the job's id in its notes (so a retry after a crash here
  finds it instead of registering it twice), loaded but behind a route that keeps the serving
  version serving, its metrics and the serving version's recorded (``record_evaluation``).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from aimass.config import Settings
from aimass.errors import AimassError, InvalidInput, NotFound, Unprocessable
from aimass.files.store import FileStore
from aimass.jobs.finetune import llm
from aimass.jobs.finetune.child import RESULT
from aimass.jobs.finetune.classifier import ClassifierMethod
from aimass.jobs.finetune.data import FileInvalid, LineError, holdout
from aimass.jobs.finetune.methods import Method, hyperparameters, method_for
from aimass.jobs.kind import JobContext, JobFailed, Outcome
from aimass.jobs.process import run_child
from aimass.refs import split_model
from aimass.registry import evaluations, routes
from aimass.registry import models as registry
from aimass.registry.models import ModelEntry
from aimass.serving.pipeline import Pipeline

READY_WAIT_S = 120.0
"""How long a finished job waits for its new version to load before it reports success
(with a warning event if the version is still loading)."""
TRAINING_THREADS = 2
CLASSIFIER = ClassifierMethod.name


def fine_tuned_name(base: str, suffix: str | None, job_id: str) -> str:
    """OpenAI's name for the result: ``ft:<base>:<suffix>:<job id>``."""
    return f"ft:{base}:{suffix or 'aimass'}:{job_id}"


def base_entry(url: str, model: str) -> ModelEntry:
    """The version a job trains from: the one named, else the serving one, else the newest."""
    name, version = split_model(model)
    if version is None:
        version = evaluations.serving_version(url, name)
    try:
        return registry.get_model(url, name, version)
    except NotFound as exc:
        raise NotFound(str(exc), param="model") from None


class FineTuneKind:
    """Runs fine-tuning jobs of one server; see the module note."""

    name = "fine_tune"
    initial_status = "validating_files"

    def __init__(self, pipeline: Pipeline, files: FileStore, settings: Settings) -> None:
        self.pipeline, self.files, self.settings = pipeline, files, settings
        self.url = settings.resolved_database_url

    async def run(self, job: JobContext) -> Outcome:
        params = job.params
        try:
            base = await asyncio.to_thread(base_entry, self.url, params["model"])
        except AimassError as exc:
            raise JobFailed(str(exc), "model_not_found", param="model") from None
        training = await self._read(params["training_file"], "training_file")
        try:
            method = method_for(base.spec, training.split(b"\n", 1)[0])
            target = method.target(base, params.get("suffix"))
            encoder = ClassifierMethod.encoder(base) if method.name == CLASSIFIER else None
        except InvalidInput as exc:
            raise JobFailed(str(exc), "invalid_model", param="model") from None
        hyper = hyperparameters(method, params.get("hyperparameters") or {})
        train, valid, dataset = await self._examples(job, method, base, training, hyper)
        await job.status("queued")
        job.check_cancelled()
        await job.status("running")
        serving = await asyncio.to_thread(self._serving, target)
        out_dir = self.settings.home / "fine_tuned" / job.id
        if not (job.workdir / RESULT).exists():
            config = self._config(job, method, base, serving, train, valid, hyper, out_dir)
            config["encoder"] = encoder
            path = job.workdir / "config.json"
            await asyncio.to_thread(path.write_text, json.dumps(config))
            argv = [sys.executable, "-m", "aimass.jobs.finetune.child", str(path)]
            await run_child(job, argv, threads=TRAINING_THREADS)
        result = json.loads((job.workdir / RESULT).read_text())
        entry = await asyncio.to_thread(
            self._register, job, method, base, target, serving, out_dir, result, dataset
        )
        decision = await asyncio.to_thread(self._promote, job, method, entry, dataset)
        await self._wait_ready(job, entry)
        version = entry.spec.version
        evaluation = {
            "dataset": dataset,
            "metric": method.metric,
            "candidate": {"version": version, "metrics": result["candidate"]},
            "serving": None if serving is None or result.get("serving") is None
            else {"version": serving.spec.version, "metrics": result["serving"]},
            "promotion": decision,
        }  # fmt: skip
        await job.event("evaluation", **{"metrics": result["candidate"],
                                         "serving_metrics": result.get("serving")})  # fmt: skip
        return Outcome(
            "succeeded",
            {
                "fine_tuned_model": fine_tuned_name(base.spec.name, params.get("suffix"), job.id),
                "registered_model": f"{entry.spec.name}:{version}",
                "method": method.name,
                "hyperparameters": hyper,
                "trained_steps": result.get("steps"),
                "evaluation": evaluation,
            },
        )

    # ---- validating_files ------------------------------------------------------------------

    async def _read(self, file_id: str, param: str) -> bytes:
        try:
            record = await asyncio.to_thread(self.files.get, file_id)
            return b"".join(await asyncio.to_thread(lambda: list(self.files.read(record))))
        except (AimassError, FileNotFoundError):
            raise JobFailed(
                f"the file {file_id!r} is gone", "file_not_found", param=param
            ) from None

    async def _examples(
        self, job: JobContext, method: Method, base: ModelEntry, training: bytes, hyper: dict
    ) -> tuple[list[Any], list[Any], str]:
        """Training and validation examples, and the name of the validation data."""
        params = job.params
        train = await asyncio.to_thread(self._parse, method, training, hyper, base, "training_file")
        valid_id = params.get("validation_file")
        if valid_id:
            data = await self._read(valid_id, "validation_file")
            valid = await asyncio.to_thread(
                self._parse, method, data, hyper, base, "validation_file"
            )
            dataset = valid_id
        else:
            train, valid = holdout(train, params["seed"], getattr(method, "class_of", None))
            dataset = f"{params['training_file']}#holdout-{params['seed']}"
        if job.checkpoint.get("validated") is None:
            await job.save_checkpoint({**job.checkpoint, "validated": len(train) + len(valid)})
            await job.event(
                f"validated the files: {len(train)} training and {len(valid)} validation "
                f"examples ({method.name})",
                training=len(train),
                validation=len(valid),
            )
        return train, valid, dataset

    @staticmethod
    def _parse(method: Method, data: bytes, hyper: dict, base: ModelEntry, param: str) -> Any:
        try:
            return method.parse(data, hyper, base)
        except LineError as exc:
            raise FileInvalid(param, exc) from None
        except ValueError as exc:
            raise FileInvalid(param, ValueError(str(exc))) from None

    # ---- running -------------------------------------------------------------------------------

    def _serving(self, name: str) -> ModelEntry | None:
        version = evaluations.serving_version(self.url, name)
        return None if version is None else registry.get_model(self.url, name, version)

    def _config(
        self,
        job: JobContext,
        method: Method,
        base: ModelEntry,
        serving: ModelEntry | None,
        train: list,
        valid: list,
        hyper: dict,
        out_dir: Path,
    ) -> dict[str, Any]:
        return {
            "method": method.name,
            "seed": job.params["seed"],
            "workdir": str(job.workdir),
            "out_dir": str(out_dir),
            "base_source": base.spec.source,
            "base_options": base.spec.options,
            "serving_source": self._comparable(method, serving),
            "hyper": hyper,
            "train": train,
            "valid": valid,
            "checkpoint": job.checkpoint,
        }

    @staticmethod
    def _comparable(method: Method, serving: ModelEntry | None) -> str | None:
        """The serving version's files, if the method can evaluate them (same kind)."""
        if serving is None:
            return None
        spec = serving.spec
        if method.name == "tabular" and Path(spec.source).suffix.lower() in (
            ".txt",
            ".lgb",
            ".model",
        ):
            return spec.source
        if method.name == "embeddings" and spec.task == "embedding":
            return spec.source
        if method.name == "text-classification" and spec.task == "text-classification":
            return spec.source
        if method.name == llm.LoraMethod.name and llm.comparable(spec):
            return spec.source
        return None

    # ---- registration and promotion -------------------------------------------------------------

    def _register(
        self,
        job: JobContext,
        method: Method,
        base: ModelEntry,
        target: str,
        serving: ModelEntry | None,
        out_dir: Path,
        result: dict[str, Any],
        dataset: str,
    ) -> ModelEntry:
        """Register the new version (once: a retry finds the one it made), loaded but kept
        from serving plain requests by a route to the serving version."""
        made = [
            e for e in registry.list_models(self.url, target)
            if e.notes.get("fine_tune", {}).get("job") == job.id
        ]  # fmt: skip
        if made:
            entry = made[0]
        else:
            if serving is not None and routes.current_route(self.url, target) is None:
                routes.promote(self.url, target, serving.spec.version)
            version = registry.next_version(self.url, target)
            spec = method.candidate_spec(base, target, version, out_dir, result)
            alias = fine_tuned_name(base.spec.name, job.params.get("suffix"), job.id)
            spec = spec.model_copy(update={"sha256": spec.digests(), "alias": alias})
            notes = {
                "fine_tune": {
                    "job": job.id,
                    "method": method.name,
                    "base": f"{base.spec.name}:{base.spec.version}",
                    "encoder": ClassifierMethod.encoder(base)
                    if method.name == CLASSIFIER else None,
                }
            }  # fmt: skip
            entry = registry.add_model(self.url, spec, load=True, notes=notes)
        version = entry.spec.version
        evaluations.record_evaluation(self.url, target, version, dataset, result["candidate"])
        if serving is not None and result.get("serving") is not None:
            evaluations.record_evaluation(
                self.url, target, serving.spec.version, dataset, result["serving"]
            )
        return registry.get_model(self.url, target, version)

    def _promote(
        self, job: JobContext, method: Method, entry: ModelEntry, dataset: str
    ) -> dict[str, Any] | None:
        rule = job.params.get("auto_promote")
        if rule is None:
            return None
        metric = rule.get("metric") or method.metric
        try:
            decision = evaluations.promote_if_better(
                self.url, entry.spec.name, entry.spec.version, metric,
                float(rule.get("margin", 0.0)), dataset=dataset,
            )  # fmt: skip
        except (Unprocessable, InvalidInput) as exc:
            return {"promoted": False, "reason": f"not promoted: {exc}", "metric": metric}
        return {"promoted": decision.promoted, "reason": decision.reason, "metric": metric,
                "candidate": decision.candidate, "serving": decision.serving}  # fmt: skip

    async def _wait_ready(self, job: JobContext, entry: ModelEntry) -> None:
        """Wait for the new version to load, so a client may call it once the job succeeded."""
        key = entry.spec.key
        deadline = time.monotonic() + READY_WAIT_S
        while time.monotonic() < deadline:
            dep = self.pipeline.manager.find(*key)
            if dep is not None and dep.state == "ready":
                return
            if dep is not None and dep.state == "failed":
                break
            await asyncio.sleep(0.2)
        await job.event(
            f"model {entry.spec.name!r} version {entry.spec.version} is registered but not "
            "ready yet; see GET /v1/admin/models",
            "warning",
        )
