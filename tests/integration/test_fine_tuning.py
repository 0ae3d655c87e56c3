"""Fine-tuning jobs through the official ``openai`` SDK: files.create → fine_tuning.jobs.create
→ events → succeeded → the new version answers through its API, for the embeddings, text
classification and tabular methods; invalid files, cancel, and auto-promotion.

One server for the module (auth off), with a tiny random sentence-transformers encoder and two
LightGBM classifiers (one trained on shuffled labels, a model any retraining beats).
"""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

from tests.conftest import run_server
from tests.integration.conftest_fine_tuning import (
    ENV,
    base_specs,
    create,
    labelled,
    pairs,
    sdk,
    table,
    wait,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fine-tuning")
    with run_server(tmp, base_specs(tmp), env=ENV) as url:
        yield url


def infer(server: str, model: str, inputs: list[dict]) -> dict:
    response = httpx.post(f"{server}/v2/models/{model}/infer", json={"inputs": inputs}, timeout=30)
    assert response.status_code == 200, response.text
    return {o["name"]: o for o in response.json()["outputs"]}


def route(server: str, name: str) -> dict | None:
    return httpx.get(f"{server}/v1/admin/models/{name}/route").json()["route"]


def test_tabular_job_retrains_lightgbm_and_registers_an_unpromoted_version(server):
    c = sdk(server)
    valid = c.files.create(file=("valid.csv", table(seed=9, rows=80)), purpose="fine-tune")
    job = create(c, "risk", table(seed=3), validation_file=valid.id, suffix="q4",
                 hyperparameters={"n_epochs": 3})  # fmt: skip
    assert job.object == "fine_tuning.job" and job.status == "validating_files"
    done = wait(c, job.id)
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model == f"ft:risk:q4:{job.id}" and done.finished_at
    assert done.registered_model == "risk:2"
    assert done.hyperparameters.n_epochs == 3
    evaluation = done.evaluation
    assert evaluation["dataset"] == valid.id and evaluation["promotion"] is None
    assert {"auc", "accuracy", "macro_f1"} <= evaluation["candidate"]["metrics"].keys()
    assert evaluation["serving"]["version"] == 1 and "auc" in evaluation["serving"]["metrics"]
    events = c.fine_tuning.jobs.list_events(job.id, limit=100).data
    messages = [e.message for e in events]
    assert any(m.startswith("validated the files") for m in messages)
    assert any(m.startswith("epoch 3 done") for m in messages) and "job succeeded" in messages
    checkpoints = c.fine_tuning.jobs.checkpoints.list(job.id).data
    assert [cp.step_number for cp in checkpoints] == [30, 20, 10]
    assert all(cp.metrics.step == cp.step_number and cp.metrics.auc for cp in checkpoints)
    rows = np.random.default_rng(0).normal(size=(3, 6)).astype(np.float32)
    features = [{"name": "features", "shape": [3, 6], "datatype": "FP32",
                 "data": rows.ravel().tolist()}]  # fmt: skip
    out = infer(server, "risk/versions/2", features)
    assert set(out["label"]["data"]) <= {"no", "yes"} and out["probabilities"]["shape"] == [3, 2]
    assert route(server, "risk")["weights"] == {"1": 100}, "the new version must not serve yet"
    assert c.fine_tuning.jobs.list(limit=100).data[0].id in {
        j.id for j in c.fine_tuning.jobs.list().data
    }


def test_embeddings_job_trains_the_encoder_and_the_new_version_embeds(server):
    c = sdk(server)
    hyper = {"n_epochs": 2, "batch_size": 8, "learning_rate_multiplier": 100}
    job = create(c, "enc", pairs(40), hyperparameters=hyper)
    done = wait(c, job.id)
    assert done.status == "succeeded", done.error
    assert done.registered_model == "enc:2"
    evaluation = done.evaluation
    assert evaluation["dataset"].endswith("#holdout-" + str(done.seed))
    for side in ("candidate", "serving"):
        assert {"recall@1", "mrr", "ndcg@10"} <= evaluation[side]["metrics"].keys()
    texts = ["the cat eats food", "paris is a city"]
    new = c.embeddings.create(model="enc:2", input=texts).data
    old = c.embeddings.create(model="enc", input=texts).data
    assert len(new[0].embedding) == 32
    assert not np.allclose(new[0].embedding, old[0].embedding), "the weights did not change"
    assert len(c.fine_tuning.jobs.checkpoints.list(job.id).data) == 2


def test_classification_job_serves_labels_and_scores(server):
    c = sdk(server)
    job = create(c, "enc", labelled(), suffix="topic", hyperparameters={"n_epochs": 30})
    done = wait(c, job.id)
    assert done.status == "succeeded", done.error
    assert done.registered_model == "enc-topic:1"
    metrics = done.evaluation["candidate"]["metrics"]
    assert {"accuracy", "macro_f1", "auc"} <= metrics.keys() and done.evaluation["serving"] is None
    texts = ["the dog eats cat food", "rain over paris"]
    text = [{"name": "text", "shape": [2], "datatype": "BYTES", "data": texts}]
    out = infer(server, "enc-topic", text)
    assert set(out["label"]["data"]) <= {"animal", "place"}
    scores = np.array(out["scores"]["data"]).reshape(2, 2)
    assert np.allclose(scores.sum(axis=1), 1.0, atol=1e-4)


@pytest.mark.parametrize(
    ("model", "data", "line"),
    [
        (
            "enc",
            b'{"anchor": "a", "positive": "b"}\n{"anchor": "c", "positive": "d"}\nnot json\n',
            3,
        ),
        ("enc", b'{"text": "a", "label": "x"}\n{"text": "", "label": "y"}\n', 2),
        ("risk", b"f0,f1,f2,f3,f4,f5,label\n1,2,3,4,5,6,no\n1,2,x,4,5,6,yes\n", 3),
        ("risk", b"f0,f1,f2,f3,f4,f5,label\n1,2,3,4,5,6,no\n1,2,3,4,5,6,maybe\n", 3),
    ],
)
def test_an_invalid_training_file_fails_the_job_naming_the_line(server, model, data, line):
    c = sdk(server)
    done = wait(c, create(c, model, data).id, timeout_s=30)
    assert done.status == "failed"
    assert done.error.param == "training_file" and done.error.code == "invalid_training_file"
    assert f"line {line}:" in done.error.message


def test_create_refuses_a_wrong_purpose_and_an_unknown_model(server):
    c = sdk(server)
    batch_file = c.files.create(file=("x.jsonl", b"{}\n"), purpose="batch").id
    for model, file_id, param in (
        ("enc", batch_file, "training_file"),
        ("nope", batch_file, "model"),
    ):
        response = httpx.post(f"{server}/v1/fine_tuning/jobs",
                              json={"model": model, "training_file": file_id})  # fmt: skip
        assert response.status_code in (400, 404) and response.json()["error"]["param"] == param


def test_cancel_stops_a_running_job_within_5_s(server):
    c = sdk(server)
    job = create(c, "enc", pairs(400), hyperparameters={"n_epochs": 50, "batch_size": 4})
    wait(c, job.id, until=lambda j: j.status == "running")
    time.sleep(1.0)
    asked = time.monotonic()
    assert c.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    while httpx.get(f"{server}/v1/jobs/{job.id}").json()["status"] != "cancelled":
        assert time.monotonic() - asked < 5, "the job did not end within 5 s"
        time.sleep(0.1)
    assert c.fine_tuning.jobs.retrieve(job.id).fine_tuned_model is None


def test_auto_promote_promotes_only_a_version_that_wins_by_the_margin(server):
    c = sdk(server)
    valid = c.files.create(file=("v.csv", table(seed=11, rows=100)), purpose="fine-tune").id
    common = {"validation_file": valid, "hyperparameters": {"n_epochs": 2}}
    hard = create(c, "weak", table(seed=4), extra_body={"auto_promote": {"margin": 0.9}}, **common)
    done = wait(c, hard.id)
    assert done.status == "succeeded" and done.evaluation["promotion"]["promoted"] is False
    assert route(server, "weak")["weights"] == {"1": 100}
    rule = {"auto_promote": {"metric": "auc", "margin": 0.1}}
    easy = create(c, "weak", table(seed=4), extra_body=rule, **common)
    done = wait(c, easy.id)
    promotion = done.evaluation["promotion"]
    assert promotion["promoted"] is True, promotion
    assert promotion["candidate"] >= promotion["serving"] + 0.1
    assert route(server, "weak")["weights"] == {"3": 100}
