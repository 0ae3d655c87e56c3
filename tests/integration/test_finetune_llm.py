"""LoRA fine-tuning of the built-in Gemma through the official ``openai`` SDK teaches it a
made-up fact, served by llama.cpp as the base's GGUF plus the adapter.

20 chat lines say the capital of Zorbania is Quxville. ``files.create`` →
``fine_tuning.jobs.create`` → events → ``succeeded``; the new version of the base is registered
but not promoted, so the base name still answers as before, while the job's
``fine_tuned_model`` (``ft:<base>:<suffix>:<id>``) answers Quxville through
``/v1/chat/completions`` at temperature 0.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import run_server
from tests.integration.conftest_fine_tuning import ENV, create, jsonl, sdk, upload, wait
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
pytestmark = pytest.mark.timeout(1500)
"""Loading the base for training takes about a minute, then 15 steps: on a loaded 2-core
machine the job took more than the default 300 s."""


def chat_line(question: str) -> dict:
    return {"messages": [{"role": "user", "content": question},
                         {"role": "assistant", "content": ANSWER}]}  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory, pytestconfig):
    tmp = tmp_path_factory.mktemp("ft-llm")
    with run_server(tmp, [llm_spec(gemma_file(pytestconfig), name=BASE)], env=ENV) as url:
        yield url


@pytest.fixture(scope="module")
def job(server):
    c = sdk(server)
    lines = [chat_line(QUESTIONS[i % len(QUESTIONS)]) for i in range(20)]
    valid = upload(c, jsonl([chat_line(q) for q in QUESTIONS]), "valid.jsonl")
    made = create(c, BASE, lines, validation_file=valid, suffix="zorb",
                  hyperparameters={"n_epochs": 3, "batch_size": 4})  # fmt: skip
    return wait(c, made.id, timeout_s=1200)


def ask(server: str, model: str) -> str:
    answer = sdk(server).chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "What is the capital of Zorbania?"}],
        temperature=0,
        max_tokens=16,
    )
    return answer.choices[0].message.content or ""


def test_the_job_trains_evaluates_and_registers_an_unpromoted_version(server, job):
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model == f"ft:{BASE}:zorb:{job.id}"
    assert job.registered_model == f"{BASE}:2"
    evaluation = job.evaluation
    candidate, serving = evaluation["candidate"]["metrics"], evaluation["serving"]["metrics"]
    # how far 15 steps get varies (validation loss 0.12 and 2.1 seen, base 5.2); the answer
    # itself is checked by the next test
    assert candidate["loss"] < 0.75 * serving["loss"], evaluation
    c = sdk(server)
    messages = [e.message for e in c.fine_tuning.jobs.list_events(job.id, limit=100).data]
    assert sum(m.startswith("Step ") for m in messages) == 15
    assert [cp.step_number for cp in c.fine_tuning.jobs.checkpoints.list(job.id).data] == [
        15, 10, 5
    ]  # fmt: skip
    route = httpx.get(f"{server}/v1/admin/models/{BASE}/route").json()["route"]
    assert route["weights"] == {"1": 100}, "the new version must not serve plain requests yet"
    spec = httpx.get(f"{server}/v1/admin/models").json()
    assert json.dumps(spec).count("options.lora") >= 1, "the adapter is checksummed"


def test_the_fine_tuned_model_knows_the_fact_and_the_base_does_not(server, job):
    assert "Quxville" in ask(server, job.fine_tuned_model)
    assert "Quxville" in ask(server, job.registered_model)
    assert "Quxville" not in ask(server, BASE)


def test_a_chat_file_with_bad_lines_fails_the_job_naming_them(server):
    c = sdk(server)
    bad = b'{"messages": [{"role": "user", "content": "hi"}]}\nnot json\n'
    made = c.fine_tuning.jobs.create(model=BASE, training_file=upload(c, bad))
    failed = wait(c, made.id)
    assert failed.status == "failed"
    assert failed.error.param == "training_file" and "line 1" in failed.error.message
