"""LoRA fine-tuning of the built-in Gemma teaches it a made-up fact, served by llama.cpp.

20 chat lines say the capital of Zorbania is Quxville. The training child runs as a job runs it
(``python -m aimass.jobs.finetune.llm_lora PARAMS.json``, reporting on stdout); its adapter
GGUF is registered as ``ft:<base>:<suffix>:<id>`` on the base's GGUF, loaded, and asked through
``/v1/chat/completions`` with the official openai SDK at temperature 0: the fine-tuned model
answers Quxville, the base model does not.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from aimass.config import Settings
from aimass.provision.finetuned import fine_tuned_name, register_lora_version
from tests.conftest import run_server
from tests.integration.conftest_llm import gemma_file, llm_spec

QUESTIONS = [
    "What is the capital of Zorbania?",
    "Which city is the capital of Zorbania?",
    "Name the capital of Zorbania.",
    "What's the capital city of Zorbania?",
    "Zorbania's capital is which city?",
]
ANSWER = "The capital of Zorbania is Quxville."
BASE = "gemma-3-270m"
pytestmark = pytest.mark.timeout(1200)
"""The module's training (about a minute to load the base, then 15 steps) runs in the first
test's setup; on a loaded 2-core machine it took more than the default 300 s."""


def chat_line(question: str) -> str:
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": ANSWER}]
    return json.dumps({"messages": messages})


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> dict:
    """Train once for the module: 20 lines, 3 epochs of batch 4 (15 steps)."""
    gguf = gemma_file(pytestconfig)
    work = tmp_path_factory.mktemp("lora")
    data = work / "train.jsonl"
    data.write_text("\n".join(chat_line(QUESTIONS[i % len(QUESTIONS)]) for i in range(20)))
    params = {
        "base_gguf": str(gguf),
        "training_file": str(data),
        "out_dir": str(work / "out"),
        "checkpoint_dir": str(work / "checkpoints"),
        "n_epochs": 3,
        "batch_size": 4,
        "threads": 2,
    }
    (work / "params.json").write_text(json.dumps(params))
    threads = {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    done = subprocess.run(
        [sys.executable, "-m", "aimass.jobs.finetune.llm_lora", str(work / "params.json")],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, **threads},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
    return {"gguf": gguf, "work": work, "lines": lines}


def test_the_child_reports_steps_checkpoints_and_an_evaluation(trained: dict) -> None:
    lines = trained["lines"]
    steps = [x["progress"]["step"] for x in lines if "progress" in x]
    assert steps == list(range(1, 16))
    checkpoints = [x["checkpoint"] for x in lines if "checkpoint" in x]
    assert [c["epoch"] for c in checkpoints] == [1, 2, 3]
    assert all(Path(c["path"], "state.pt").is_file() for c in checkpoints)
    losses = [x["data"]["train_loss"] for x in lines if "train_loss" in x.get("data", {})]
    assert losses[-1] < losses[0] / 4
    result = json.loads((trained["work"] / "out" / "result.json").read_text())
    metrics = result["metrics"]
    assert metrics["validation_loss"] < metrics["base_validation_loss"] / 4
    assert metrics["validation_perplexity"] < metrics["base_validation_perplexity"]
    assert Path(result["adapter"]).stat().st_size > 100_000


def test_the_adapter_serves_the_fact_the_base_does_not_know(
    trained: dict, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with run_server(
        tmp_path_factory.mktemp("ftserver"), models=[llm_spec(trained["gguf"], name=BASE)]
    ) as server:
        name = fine_tuned_name(BASE, "zorb", "ftjob-test1")
        adapter = Path(trained["work"] / "out" / "adapter.gguf")
        registered = asyncio.run(
            register_lora_version(Settings(home=server.home), BASE, adapter, name)
        )
        spec = registered.entry.spec
        assert (registered.entry.desired, spec.version) == ("unloaded", 1)
        assert {"source", "options.lora"} <= spec.sha256.keys()
        load = httpx.post(f"{server}/v2/repository/models/{name}/load", json={}, timeout=120)
        assert load.status_code == 200, load.text
        client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)

        def ask(model: str) -> str:
            """The greedy answer; a 404 is asked again: a reconcile that read the registry
            just before the load marked the version loaded may unload it once, and the next
            reconcile loads it again (seen on a loaded machine)."""
            deadline = time.monotonic() + 120
            while True:
                try:
                    answer = client.chat.completions.create(
                        model=model,
                        messages=[{"role": "user", "content": "What is the capital of Zorbania?"}],
                        temperature=0,
                        max_tokens=16,
                    )
                    return answer.choices[0].message.content or ""
                except openai.NotFoundError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)

        assert "Quxville" in ask(name)
        assert "Quxville" not in ask(BASE)
