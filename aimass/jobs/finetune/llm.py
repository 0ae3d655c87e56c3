"""LLM method: LoRA on a GGUF base (``llm_lora`` trains it), served by llama.cpp as the base's
GGUF plus the adapter (``options.lora``), as a new version of the base model.

Training data is OpenAI's chat fine-tuning JSONL (``{"messages": [...]}`` a line, optional
``weight`` 0/1 on assistant messages). Evaluation: validation loss and perplexity of the new
version and of the base GGUF without an adapter; the serving version is compared only when it
is that plain base (a version with an adapter of its own is not re-evaluated here).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aimass.errors import InvalidInput
from aimass.jobs.finetune.chat_lines import validate_chat_lines
from aimass.registry.models import ModelEntry
from aimass.spec import ModelSpec

ADAPTER_FILE = "adapter.gguf"


class LoraMethod:
    name = "llm-lora"
    metric = "loss"
    defaults = {"n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 1.0}

    def fits(self, first_line: bytes) -> bool:
        return b'"messages"' in first_line

    def parse(self, data: bytes, hyper: dict[str, Any], base: ModelEntry) -> list[dict]:
        try:
            return validate_chat_lines(data.splitlines())
        except InvalidInput as exc:  # every bad line, each as "line N: problem"
            raise ValueError(exc.message) from None

    def target(self, base: ModelEntry, suffix: str | None) -> str:
        return base.spec.name

    def candidate_spec(
        self, base: ModelEntry, name: str, version: int, folder: Path, result: dict[str, Any]
    ) -> ModelSpec:
        options = {**base.spec.options, "lora": str(folder / ADAPTER_FILE)}
        return base.spec.model_copy(
            update={
                "name": name,
                "version": version,
                "options": options,
                "sha256": {},
                "description": f"LoRA fine-tune of {base.spec.name}:{base.spec.version}",
            }
        )


def comparable(spec: ModelSpec) -> bool:
    """Whether the serving version is a plain GGUF (no adapter) this method can evaluate."""
    return spec.runtime == "llamacpp" and not spec.options.get("lora")


# ---- in the child process -------------------------------------------------------------------


def train(config: dict[str, Any], report) -> dict[str, Any]:
    from aimass.jobs.finetune.llm_lora import TrainParams
    from aimass.jobs.finetune.llm_lora import train as train_lora

    workdir, hyper = Path(config["workdir"]), config["hyper"]
    files = {}
    for part in ("train", "valid"):
        path = workdir / f"{part}.jsonl"
        path.write_text("\n".join(json.dumps(example) for example in config[part]))
        files[part] = str(path)
    params = TrainParams(
        base_gguf=config["base_source"],
        training_file=files["train"],
        validation_file=files["valid"],
        out_dir=config["out_dir"],
        checkpoint_dir=str(workdir / "checkpoints"),
        n_epochs=int(hyper["n_epochs"]),
        batch_size=int(hyper["batch_size"]),
        learning_rate_multiplier=float(hyper["learning_rate_multiplier"]),
        seed=int(config["seed"]),
        threads=2,
        resume=report.checkpoint.get("path"),
    )
    done = train_lora(params, report)
    m = done["metrics"]
    base = {"loss": m["base_validation_loss"], "perplexity": m["base_validation_perplexity"]}
    same_base = config.get("serving_source") == config["base_source"]
    return {
        "candidate": {"loss": m["validation_loss"], "perplexity": m["validation_perplexity"]},
        "serving": base if same_base else None,
        "base": base,
        "steps": done["trained_steps"],
    }
