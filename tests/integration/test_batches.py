"""/v1/batches on a real server, driven by the official ``openai`` SDK unchanged: files.create →
batches.create → poll → files.content, for embeddings, chat and v2 infer, compared with the same
requests sent online; invalid input files, ownership, cancel; and ``aimass jobs``.

One server with access control on (an admin and two user keys), a tiny encoder, the built-in
Gemma GGUF and two tiny ONNX models (``add``; ``slow``, whose rows take a while, for cancel).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import numpy as np
import openai
import pytest

from aimass.registry import keys
from tests.conftest import ROOT, make_add_model, onnx_spec, run_server
from tests.integration.conftest_batches import (
    ENV,
    SLOW_BODY,
    client,
    encoder_spec,
    read_lines,
    requests,
    slow_spec,
    submit,
    wait,
)
from tests.integration.conftest_llm import gemma_file, llm_spec


@pytest.fixture(scope="module")
def env(pytestconfig, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("batches")
    home = tmp / "home"
    home.mkdir()
    url = f"sqlite:///{home / 'aimass.db'}"
    _, admin = keys.create_key(url, "admin", admin=True)
    _, alice = keys.create_key(url, "alice")
    _, bob = keys.create_key(url, "bob")
    models = [
        encoder_spec(tmp),
        llm_spec(gemma_file(pytestconfig), limits={"max_queue": 64}).model_dump(mode="json"),
        onnx_spec("add", make_add_model(tmp / "add.onnx")),
        slow_spec(tmp),
    ]
    with run_server(tmp, models, extra_args=["--require-auth"], env=ENV) as srv:
        yield {"base": str(srv), "home": home, "admin": admin, "alice": alice, "bob": bob}


def test_an_embeddings_batch_answers_as_the_online_endpoint(env):
    c = client(env)
    bodies = [{"model": "tiny", "input": [f"sentence {i}", "x" * (i + 1)]} for i in range(12)]
    batch = submit(c, "/v1/embeddings", requests("/v1/embeddings", bodies))
    assert (batch.status, batch.endpoint, batch.completion_window) == (
        "validating",
        "/v1/embeddings",
        "24h",
    )
    assert batch.id.startswith("batch_") and batch.expires_at > batch.created_at
    done = wait(c, batch.id)
    assert done.status == "completed", done.errors
    assert done.request_counts.model_dump() == {"completed": 12, "failed": 0, "total": 12}
    assert done.error_file_id is None and done.model == "tiny"
    assert done.in_progress_at <= done.finalizing_at <= done.completed_at
    out = read_lines(c, done.output_file_id)
    assert [line["custom_id"] for line in out] == [f"req-{i}" for i in range(12)]
    assert c.files.retrieve(done.output_file_id).purpose == "batch_output"
    online = httpx.Client(headers={"Authorization": f"Bearer {env['alice']}"})
    tokens = 0
    for line, body in zip(out, bodies, strict=True):
        assert line["response"]["status_code"] == 200 and line["error"] is None
        assert line["id"].startswith("batch_req_") and line["response"]["request_id"]
        expected = online.post(f"{env['base']}/v1/embeddings", json=body).json()
        got = line["response"]["body"]
        # rows batched with other lengths are padded differently: equal up to float rounding
        vectors = [d.pop("embedding") for d in got["data"]]
        assert np.allclose(vectors, [d.pop("embedding") for d in expected["data"]], atol=1e-6)
        assert got == expected
        tokens += expected["usage"]["prompt_tokens"]
    assert done.usage.input_tokens == tokens == done.usage.total_tokens


def test_a_chat_batch_answers_as_the_online_endpoint(env):
    c = client(env)
    prompts = ["Hello", "The capital of France is", "Count: one, two,"]
    bodies = [
        {
            "model": "gemma",
            "messages": [{"role": "user", "content": p}],
            "max_tokens": 6,
            "temperature": 0,
        }
        for p in prompts
    ]
    done = wait(c, submit(c, "/v1/chat/completions", requests("/v1/chat/completions", bodies)).id)
    assert done.status == "completed", done.errors
    out = read_lines(c, done.output_file_id)
    usage = 0
    for line, body in zip(out, bodies, strict=True):
        got = line["response"]["body"]
        expected = c.chat.completions.create(**body)
        assert got["object"] == "chat.completion" and got["model"] == "gemma"
        assert got["choices"][0]["message"]["content"] == expected.choices[0].message.content
        online = expected.usage.model_dump(exclude_none=True)
        # the prefix cache may hold the prompt by the time it is sent online
        assert got["usage"].pop("prompt_tokens_details", None) is not None
        online.pop("prompt_tokens_details", None)
        assert got["usage"] == online
        usage += got["usage"]["total_tokens"]
    assert done.usage.total_tokens == usage and done.usage.output_tokens > 0


def test_v2_infer_and_errors_per_line(env):
    c = client(env)
    good = {
        "inputs": [
            {"name": "a", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
            {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]},
        ]
    }
    wrong = {"inputs": [{"name": "nope", "shape": [1], "datatype": "FP32", "data": [1]}]}
    endpoint = "/v2/models/add/infer"
    done = wait(c, submit(c, endpoint, requests(endpoint, [good, wrong, good])).id)
    assert done.status == "completed"
    assert done.request_counts.model_dump() == {"completed": 2, "failed": 1, "total": 3}
    out, errors = read_lines(c, done.output_file_id), read_lines(c, done.error_file_id)
    assert [line["custom_id"] for line in out] == ["req-0", "req-2"]
    outputs = {o["name"]: o["data"] for o in out[0]["response"]["body"]["outputs"]}
    assert outputs == {"sum": [2, 3, 4, 5], "diff": [0, 1, 2, 3]}
    assert errors[0]["custom_id"] == "req-1"
    assert errors[0]["response"]["status_code"] == 400
    assert "nope" in errors[0]["response"]["body"]["error"]


def test_an_invalid_file_fails_with_every_bad_line_numbered(env):
    c = client(env)
    body = {"model": "tiny", "input": "hi"}
    lines = [
        json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": body}),
        "{not json",
        json.dumps({"method": "POST", "url": "/v1/embeddings", "body": body}),
        json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": body}),
        json.dumps({"custom_id": "b", "method": "GET", "url": "/v1/embeddings", "body": body}),
        json.dumps({"custom_id": "c", "method": "POST", "url": "/v1/completions", "body": body}),
        "",
        json.dumps(
            {"custom_id": "d", "method": "POST", "url": "/v1/embeddings", "body": {"model": "tiny"}}
        ),
        json.dumps(
            {
                "custom_id": "e",
                "method": "POST",
                "url": "/v1/embeddings",
                "body": {"model": "other", "input": "x"},
            }
        ),
    ]
    made = c.files.create(file=("bad.jsonl", "\n".join(lines).encode()), purpose="batch")
    batch = c.batches.create(
        input_file_id=made.id, endpoint="/v1/embeddings", completion_window="24h"
    )
    done = wait(c, batch.id)
    assert done.status == "failed" and done.failed_at and done.output_file_id is None
    found = {(e.line, e.code) for e in done.errors.data}
    assert found == {
        (2, "invalid_json_line"),
        (3, "missing_custom_id"),
        (4, "duplicate_custom_id"),
        (5, "invalid_method"),
        (6, "invalid_url"),
        (8, "invalid_request"),
        (9, "mismatched_model"),
    }
    assert next(e for e in done.errors.data if e.line == 8).param == "body.input"
    assert c.embeddings.create(model="tiny", input="still serving").data


def test_create_checks_the_endpoint_and_the_file(env):
    c = client(env)
    made = c.files.create(file=("x.jsonl", b"{}\n"), purpose="user_data")
    with pytest.raises(openai.BadRequestError, match="purpose 'batch'"):
        c.batches.create(input_file_id=made.id, endpoint="/v1/embeddings", completion_window="24h")
    with pytest.raises(openai.BadRequestError, match="endpoint"):
        c.batches.create(input_file_id=made.id, endpoint="/v1/moderations", completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        c.batches.create(
            input_file_id="file-nope", endpoint="/v1/embeddings", completion_window="24h"
        )


def test_another_key_gets_404_for_a_batch(env):
    alice, bob, admin = client(env), client(env, "bob"), client(env, "admin")
    lines = requests("/v1/embeddings", [{"model": "tiny", "input": "mine"}])
    batch = submit(alice, "/v1/embeddings", lines)
    with pytest.raises(openai.NotFoundError):
        bob.batches.retrieve(batch.id)
    with pytest.raises(openai.NotFoundError):
        bob.batches.cancel(batch.id)
    assert batch.id not in [b.id for b in bob.batches.list()]
    assert admin.batches.retrieve(batch.id).id == batch.id
    done = wait(alice, batch.id)
    with pytest.raises(openai.NotFoundError):
        bob.files.content(done.output_file_id)
    assert (
        httpx.get(
            f"{env['base']}/v1/jobs/{batch.id}", headers={"Authorization": f"Bearer {env['bob']}"}
        ).status_code
        == 404
    )


def test_list_pages_newest_first(env):
    c = client(env, "bob")
    lines = requests("/v1/embeddings", [{"model": "tiny", "input": "page"}])
    made = [submit(c, "/v1/embeddings", lines).id for _ in range(3)]
    first = c.batches.list(limit=2)
    assert [b.id for b in first.data] == made[::-1][:2] and first.has_more
    rest = c.batches.list(limit=2, after=first.data[-1].id)
    assert [b.id for b in rest.data] == made[:1]
    for batch_id in made:
        wait(c, batch_id)


def test_cancel_stops_within_5_s_and_keeps_partial_output(env):
    c = client(env)
    lines = requests("/v2/models/slow/infer", [SLOW_BODY] * 400)
    batch = submit(c, "/v2/models/slow/infer", lines)
    wait(c, batch.id, until=lambda b: b.request_counts.completed >= 4)
    asked = time.monotonic()
    cancelling = c.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at
    done = wait(c, batch.id, timeout_s=10)
    took = time.monotonic() - asked
    assert done.status == "cancelled" and took < 5, (done.status, took)
    out, errors = read_lines(c, done.output_file_id), read_lines(c, done.error_file_id)
    assert len(out) == done.request_counts.completed >= 4
    assert len(out) + len(errors) == 400
    ids = [line["custom_id"] for line in out + errors]
    assert sorted(ids) == sorted(f"req-{i}" for i in range(400))
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}


def test_the_jobs_cli_lists_shows_and_cancels(env):
    c = client(env)
    batch = submit(c, "/v2/models/slow/infer", requests("/v2/models/slow/infer", [SLOW_BODY] * 200))
    cli = {**os.environ, "AIMASS_API_KEY": env["alice"]}

    def aimass(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "aimass", "jobs", *args, "--url", env["base"]],
            env=cli,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    cancelled = aimass("cancel", batch.id)
    assert cancelled.returncode == 0 and batch.id in cancelled.stdout, cancelled.stderr
    assert wait(c, batch.id, timeout_s=10).status == "cancelled"
    listed = aimass("list")
    assert listed.returncode == 0 and f"{batch.id}  batch  cancelled" in listed.stdout
    shown = aimass("show", batch.id, "--wait")
    assert shown.returncode == 0 and json.loads(shown.stdout)["status"] == "cancelled"
    events = aimass("events", batch.id)
    assert events.returncode == 0 and "job cancelled" in events.stdout
    assert aimass("show", "batch_nope").returncode == 1
