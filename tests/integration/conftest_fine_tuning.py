"""Helpers of the fine-tuning tests: the tiny base models, training files, submitting with the
official SDK and polling.

Imported by the fine-tuning test modules (not a pytest conftest: it only provides helpers).
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import numpy as np
import openai

from tests.factories_tabular import make_lightgbm_model, training_data
from tests.integration.conftest_batches import encoder_spec, jsonl

ENV = {"AIMASS_AUTH_FAILURE_DELAY_S": "0", "AIMASS_JOBS_POLL_INTERVAL_S": "0.2"}
FINISHED = ("succeeded", "failed", "cancelled")
ANIMALS = [
    "the cat eats food",
    "a dog and a cat",
    "dogs eat food",
    "the lazy dog",
    "cats and dogs",
    "a quick brown fox",
    "the fox jumps over the dog",
    "cat food",
]
PLACES = [
    "paris is a city",
    "the capital of france",
    "paris in the rain",
    "a city in france",
    "the sun over paris",
    "france and paris",
    "the capital city",
    "rain in the city",
]


def tabular_spec(tmp: Path, name: str = "risk", noise: bool = False) -> dict:
    """A binary LightGBM model; ``noise``: trained on shuffled labels (a weak model)."""
    path = tmp / f"{name}.txt"
    if noise:
        import lightgbm

        x, y = training_data("classification")
        y = np.random.default_rng(5).permutation(y)
        lightgbm.LGBMClassifier(n_estimators=5, num_leaves=3, verbose=-1, n_jobs=1).fit(
            x, y
        ).booster_.save_model(str(path))
    else:
        make_lightgbm_model(path)
    return {"name": name, "runtime": "tabular", "task": "classification", "source": str(path),
            "options": {"classes": ["no", "yes"]}}  # fmt: skip


def base_specs(tmp: Path) -> list[dict]:
    return [
        {**encoder_spec(tmp), "name": "enc"},
        tabular_spec(tmp),
        tabular_spec(tmp, "weak", True),
    ]


def pairs(n: int) -> list[dict]:
    """Anchor/positive pairs the tiny vocabulary tokenizes: a text and a paraphrase of it."""
    texts = ANIMALS + PLACES
    return [
        {"anchor": texts[i % len(texts)], "positive": f"{texts[i % len(texts)]} {i % 7}"}
        for i in range(n)
    ]


def labelled() -> list[dict]:
    return [{"text": t, "label": "animal"} for t in ANIMALS] + [
        {"text": t, "label": "place"} for t in PLACES
    ]


def table(seed: int, rows: int = 200, labels: bool = True) -> bytes:
    """A CSV of the factories' learnable features with a ``label`` column (no/yes)."""
    x, y = training_data("classification", seed=seed)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([f"f{i}" for i in range(x.shape[1])] + ["label"])
    for features, label in list(zip(x, y, strict=True))[:rows]:
        writer.writerow([f"{v:.5f}" for v in features] + [["no", "yes"][label]])
    return out.getvalue().encode()


def upload(c: openai.OpenAI, data: bytes, name: str = "train.jsonl") -> str:
    return c.files.create(file=(name, data), purpose="fine-tune").id


def create(c: openai.OpenAI, model: str, lines: list[dict] | bytes, **kwargs):
    data = lines if isinstance(lines, bytes) else jsonl(lines)
    name = "train.csv" if isinstance(lines, bytes) else "train.jsonl"
    return c.fine_tuning.jobs.create(model=model, training_file=upload(c, data, name), **kwargs)


def wait(c: openai.OpenAI, job_id: str, until=None, timeout_s: float = 120):
    done = until or (lambda j: j.status in FINISHED)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = c.fine_tuning.jobs.retrieve(job_id)
        if done(job):
            return job
        time.sleep(0.1)
    raise AssertionError(f"{job_id} is still {job.status} after {timeout_s} s")


def sdk(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)
