"""Which training method a fine-tuning job uses: a small table from the base model's kind
(runtime, task) to the methods that can train it.

A method is an object (``Method``) that reads and validates the job's files in the server
(``parse``), names the model the new version is registered under (``target``), and describes
that version (``candidate_spec``); its training and evaluation run in the job's child process
(``child.TRAINERS`` names the module by ``name``). Adding a method (as the LLM's LoRA was) is
one entry in ``METHODS`` and one in ``child.TRAINERS``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from aimass.errors import InvalidInput
from aimass.registry.models import ModelEntry
from aimass.spec import ModelSpec


class Method(Protocol):
    """A way to train one kind of model. A method may also define ``class_of(row)``: the
    held-out split of a job without a validation file is then stratified by it."""

    name: str
    metric: str
    """The metric ``auto_promote`` compares when it names none."""
    defaults: dict[str, Any]
    """Values of the hyperparameters a job leaves at "auto"."""

    def fits(self, first_line: bytes) -> bool:
        """Whether a training file starting with this line is this method's data."""

    def parse(self, data: bytes, hyper: dict[str, Any], base: ModelEntry) -> Any:
        """The file's examples; ``LineError`` naming the first invalid line."""

    def target(self, base: ModelEntry, suffix: str | None) -> str:
        """The model name the new version is registered under."""

    def candidate_spec(
        self, base: ModelEntry, name: str, version: int, folder: Path, result: dict[str, Any]
    ) -> ModelSpec:
        """The new version's spec, served from the files the child wrote to ``folder``."""


def _table() -> dict[tuple[str, str], tuple[Method, ...]]:
    from aimass.jobs.finetune.classifier import ClassifierMethod
    from aimass.jobs.finetune.embeddings import EmbeddingsMethod
    from aimass.jobs.finetune.llm import LoraMethod
    from aimass.jobs.finetune.tabular import TabularMethod

    embeddings, classifier, tabular = EmbeddingsMethod(), ClassifierMethod(), TabularMethod()
    return {
        ("transformers", "embedding"): (embeddings, classifier),
        ("transformers", "text-classification"): (classifier,),
        ("tabular", "classification"): (tabular,),
        ("tabular", "regression"): (tabular,),
        ("tabular", "tensor"): (tabular,),
        ("llamacpp", "text-generation"): (LoraMethod(),),
    }


METHODS = _table()
"""(runtime, task) of the base model → the methods that train it, tried in order: the first
whose ``fits`` accepts the training file's first line (an embeddings model trains as an
encoder on pairs, or as a classifier's frozen encoder on labelled text)."""


def method_for(spec: ModelSpec, first_line: bytes) -> Method:
    """The method for this base model and training file; a 400 naming ``model`` if none."""
    methods = METHODS.get((spec.runtime, spec.task), ())
    for method in methods:
        if method.fits(first_line):
            return method
    if methods:
        return methods[0]
    kinds = ", ".join(f"{r}/{t}" for r, t in METHODS)
    raise InvalidInput(
        f"model {spec.name!r} (runtime {spec.runtime!r}, task {spec.task!r}) cannot be "
        f"fine-tuned here; the kinds that can: {kinds}",
        param="model",
    )


def hyperparameters(method: Method, asked: dict[str, Any]) -> dict[str, Any]:
    """The job's hyperparameters with every "auto" (or absent) one resolved."""
    resolved = dict(method.defaults)
    for key, value in asked.items():
        if value is not None and value != "auto":
            resolved[key] = value
    return resolved
