"""The training process of a fine-tuning job: ``python -m aimass.jobs.finetune.child CONFIG``.

Started by ``jobs.process.run_child`` (nice 19, one or two threads) with the JSON config the
kind wrote in the job's folder; it trains with the method's ``train(config, report)``, and
talks back one JSON object a line on stdout (``Report``): events, progress, and checkpoints
(the whole list so far, with each epoch's metrics; the state itself stays in the job folder).
A resumed attempt gets the last checkpoint in ``config["checkpoint"]``. The method writes the
new version's files to ``config["out_dir"]`` and the evaluation to ``result.json`` last, so a
crash before that leaves nothing the kind would register.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

TRAINERS = {
    "embeddings": "aimass.jobs.finetune.embeddings",
    "text-classification": "aimass.jobs.finetune.classifier",
    "tabular": "aimass.jobs.finetune.tabular",
    "llm-lora": "aimass.jobs.finetune.llm",
}
"""The module whose ``train(config, report)`` runs each method (the ``methods`` table's names)."""
RESULT = "result.json"


class Report:
    """What a trainer says to the job, as the lines ``run_child`` reads."""

    def __init__(self, checkpoint: dict[str, Any]) -> None:
        self.total = 0
        """Steps the whole training takes (the trainer sets it): progress is steps of it."""
        self.checkpoint = dict(checkpoint)
        self.checkpoint.setdefault("checkpoints", [])

    def event(self, message: str, level: str = "info", **data: Any) -> None:
        self._say({"event": message, "level": level, "data": data})

    def progress(self, epoch: int, step: int) -> None:
        """How far training got, in the shape ``aimass jobs show --wait`` draws a bar of."""
        self._say({"progress": {"epoch": epoch, "completed": step, "total": self.total}})

    def save(self, epoch: int, step: int, path: str, metrics: dict[str, float]) -> None:
        """An epoch's state is on disk at ``path``: record it (and its metrics) durably."""
        metrics = {"step": float(step), **metrics}
        entry = {"epoch": epoch, "step": step, "metrics": metrics, "path": path,
                 "created_at": int(time.time())}  # fmt: skip
        self.checkpoint["checkpoints"] = [*self.checkpoint["checkpoints"], entry]
        self.checkpoint.update(epoch=epoch, step=step, path=path)
        self._say({"checkpoint": self.checkpoint})
        self.progress(epoch, step)
        self.event(f"epoch {epoch} done: step {step}", **metrics)

    @staticmethod
    def _say(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()


def main(argv: list[str]) -> int:
    config = json.loads(Path(argv[1]).read_text())
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # progress bars and deprecation notes would become the job's log events
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.simplefilter("ignore")
    trainer = importlib.import_module(TRAINERS[config["method"]])
    result = trainer.train(config, Report(config.get("checkpoint") or {}))
    out = Path(config["workdir"]) / RESULT
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
