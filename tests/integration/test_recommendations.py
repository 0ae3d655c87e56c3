"""The recommendation service end to end on a real server with generated shop data: train (a
job) → evaluate against popularity → promote → serve → events fold in without a retrain → the
next training job reads them; a bad training file fails its job naming line and column."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import ROOT, run_server
from tests.integration.conftest_llm import metric
from tests.integration.conftest_scenarios import SCENARIO_ENV, cli, upload, wait_job, wait_ready

MODEL = "shop"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("recommend")
    data = tmp / "shop"
    subprocess.run(
        [sys.executable, "examples/data/make_recommend.py", "--users", "400", "--items", "150",
         "--out", str(data)],
        check=True, cwd=ROOT,
    )  # fmt: skip
    with run_server(tmp, [], env=SCENARIO_ENV) as srv:
        http = httpx.Client(base_url=str(srv), timeout=60)
        training = upload(http, data / "interactions.csv")
        items = upload(http, data / "items.csv")
        body = {"name": MODEL, "training_file": training, "items_file": items,
                "hyperparameters": {"factors": 16, "iterations": 10}}  # fmt: skip
        created = http.post("/v1/recommendations/models", json=body)
        assert created.status_code == 200, created.text
        job = wait_job(http, created.json()["id"])
        yield {"http": http, "job": job, "data": data, "training": training, "srv": srv,
               "items": items}  # fmt: skip


def recommend(env, user: str, **extra) -> dict:
    answer = env["http"].post("/v1/recommendations", json={"model": MODEL, "user": user, **extra})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_training_evaluates_against_popularity_and_promotes(env):
    job = env["job"]
    assert job["kind"] == "recommend_train" and job["status"] == "completed", job
    result = job["result"]
    assert result["model"] == f"{MODEL}:1" and result["promoted"] is True, result
    assert result["metrics"]["ndcg@10"] > result["baseline"]["ndcg@10"]
    assert {"precision@10", "recall@10", "ndcg@10"} <= set(result["metrics"])
    wait_ready(env["http"], MODEL)
    shown = env["http"].get("/v1/jobs/" + job["id"] + "/events").json()["data"]
    assert any(e["message"] == "evaluated" for e in shown)


def test_known_user_gets_ranked_items_and_filters_hold(env):
    wait_ready(env["http"], MODEL)
    answer = recommend(env, "u00001", n=5)
    assert answer["fallback"] is None and len(answer["data"]) == 5
    scores = [x["score"] for x in answer["data"]]
    assert scores == sorted(scores, reverse=True)
    categories = {}
    for line in (env["data"] / "items.csv").read_text().splitlines()[1:]:
        item, category, _ = line.split(",")
        categories[item] = category
    only = recommend(env, "u00001", n=5, filter={"category": ["books", "music"]})
    assert only["data"] and {categories[x["item"]] for x in only["data"]} <= {"books", "music"}
    seen = {line.split(",")[1] for line in (env["data"] / "interactions.csv").read_text()
            .splitlines()[1:] if line.startswith("u00001,")}  # fmt: skip
    assert not seen & {x["item"] for x in recommend(env, "u00001", n=20)["data"]}


def test_unknown_user_gets_popularity_flagged_and_similar_items(env):
    wait_ready(env["http"], MODEL)
    answer = recommend(env, "nobody", n=3)
    assert answer["fallback"] == "popularity" and len(answer["data"]) == 3
    similar = env["http"].post("/v1/recommendations/similar",
                               json={"model": MODEL, "item": "i00003", "n": 4})  # fmt: skip
    assert similar.status_code == 200 and len(similar.json()["data"]) == 4
    assert "i00003" not in {x["item"] for x in similar.json()["data"]}
    missing = env["http"].post("/v1/recommendations/similar",
                               json={"model": MODEL, "item": "nope", "n": 4})  # fmt: skip
    assert missing.status_code == 400 and "nope" in missing.text


def test_concurrent_users_each_get_the_answer_a_lone_request_gets(env):
    """Requests merged into one replica call (one implicit call for all their users) answer
    each user as alone."""
    http, base = env["http"], str(env["srv"])
    wait_ready(http, MODEL)
    asks = [{"user": f"u{i:05d}", "n": 5 + i % 3} for i in range(20, 44)]
    asks += [{"user": "stranger", "n": 4}, {"user": "u00050", "filter": {"category": "books"}}]
    alone = [recommend(env, **ask) for ask in asks]
    rows, batches = (metric(base, f"aimass_batch_size_{x}", model=MODEL) for x in ("sum", "count"))
    with ThreadPoolExecutor(len(asks)) as pool:
        for _ in range(3):
            together = pool.map(lambda ask: recommend(env, **ask), asks)
            for ask, one, got in zip(asks, alone, together, strict=True):
                assert [x["item"] for x in got["data"]] == [x["item"] for x in one["data"]], ask
                assert got["fallback"] == one["fallback"] and got["user"] == ask["user"]
                assert [x["score"] for x in got["data"]] == pytest.approx(
                    [x["score"] for x in one["data"]], rel=1e-5, abs=1e-6
                )  # a batch's scores are summed by BLAS in another order
    rows = metric(base, "aimass_batch_size_sum", model=MODEL) - rows
    assert rows > metric(base, "aimass_batch_size_count", model=MODEL) - batches  # merged


def test_events_change_the_next_answer_without_retraining_and_feed_the_next_job(env):
    http = env["http"]
    wait_ready(http, MODEL)
    before = recommend(env, "u00002", n=10)
    events = [{"user": "u00002", "item": f"i{i:05d}", "weight": 5} for i in range(100, 110)]
    events += [{"user": "newcomer", "item": "i00100"}, {"user": "newcomer", "item": "i00101"}]
    stored = http.post("/v1/recommendations/events", json={"model": MODEL, "events": events})
    assert stored.status_code == 200 and stored.json()["stored"] == 12
    after = recommend(env, "u00002", n=10)
    assert after["events_folded_in"] == 10 and after["data"] != before["data"]
    assert not {f"i{i:05d}" for i in range(100, 110)} & {x["item"] for x in after["data"]}
    newcomer = recommend(env, "newcomer", n=5)
    assert newcomer["fallback"] is None and newcomer["events_folded_in"] == 2
    # the server caches a user's events: a further write is still seen by the next request
    more = [{"user": "u00002", "item": "i00120", "weight": 5}]
    assert http.post("/v1/recommendations/events", json={"model": MODEL, "events": more}).is_success
    assert recommend(env, "u00002", n=10)["events_folded_in"] == 11
    body = {"name": MODEL, "training_file": env["training"], "items_file": env["items"],
            "hyperparameters": {"factors": 16, "iterations": 10}}  # fmt: skip
    job = wait_job(http, http.post("/v1/recommendations/models", json=body).json()["id"])
    assert job["status"] == "completed" and job["result"]["version"] == 2, job
    assert "serving version 1" in job["result"]["reason"] or job["result"]["promoted"]
    read = [e for e in http.get(f"/v1/jobs/{job['id']}/events").json()["data"]
            if e["message"] == "read"]  # fmt: skip
    lines = len((env["data"] / "interactions.csv").read_text().splitlines()) - 1
    assert read[0]["data"]["interactions"] == lines + 13


def test_a_bad_training_file_fails_its_job_naming_line_and_column(env, tmp_path):
    http = env["http"]
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item,weight\nu1,i1,1\nu2,i2,heavy\n")
    body = {"name": "broken", "training_file": upload(http, bad)}
    job = wait_job(http, http.post("/v1/recommendations/models", json=body).json()["id"])
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "invalid_training_file"
    assert "line 3" in job["error"]["message"] and "'weight'" in job["error"]["message"]
    missing = http.post(
        "/v1/recommendations/models", json={"name": "x", "training_file": "file-nope"}
    )
    assert missing.status_code == 404 and "training_file" in missing.text


def test_the_cli_trains_recommends_and_records_events(env):
    base, data = str(env["srv"]), env["data"]
    files = [str(data / "interactions.csv"), "--items", str(data / "items.csv")]
    made = cli(base, "recommend", "train", "cli-shop", *files, "-p", "factors=8")
    assert made.returncode == 0, made.stderr
    job = json.loads(made.stdout)
    assert job["status"] == "completed" and job["result"]["model"] == "cli-shop:1"
    wait_ready(env["http"], "cli-shop")
    asked = cli(base, "recommend", "user", "cli-shop", "u00003", "-n", "3",
                "--filter", "category=books", "--filter", "category=toys")  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    assert len(json.loads(asked.stdout)["data"]) == 3
    noted = cli(base, "recommend", "event", "cli-shop", "u00003", "i00007", "--weight", "2")
    assert noted.returncode == 0 and json.loads(noted.stdout)["stored"] == 1
    near = cli(base, "recommend", "similar", "cli-shop", "i00007", "-n", "2")
    assert near.returncode == 0 and len(json.loads(near.stdout)["data"]) == 2
