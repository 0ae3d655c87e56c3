"""The running server against its own OpenAPI document (``/openapi.json``), with schemathesis.

A real server (access control on, an admin key) serves small real models: an ONNX adder, a
text echo, a tiny encoder for embeddings, a tiny cross-encoder for rerank and Gemma 3 270M,
asked for one token per generation. Two tests read the document from it:

- every operation is called once with a request written here, and its answer (200, or the
  status named) is held to the operation's declared schema by schemathesis' checks;
- schemathesis' own runner (``schemathesis run``, settings in ``schemathesis.toml``, real names
  put in by ``schemathesis_hooks.py``) generates requests for every operation: examples,
  coverage and fuzzing phases, valid and invalid data, derandomized. It fails on any 5xx, a
  status, content type or header the document does not declare, an answer that breaks its
  schema, a declared auth that is not enforced, or invalid data that is accepted.

Destructive admin operations never touch what the rest of the run needs: the fuzzed ones are
aimed at a scratch model and key (the hooks), and the written calls remove what they created.
"""

from __future__ import annotations

import base64
import io
import os
import re
import subprocess
import sys
import wave
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import schemathesis
from PIL import Image, ImageDraw
from schemathesis.specs.openapi.checks import positive_data_acceptance

from aimass.provision.builtin import asr_builtins, ocr_builtins
from aimass.registry import keys
from aimass.scenarios.risk.train import check_params, train
from tests.conftest import ROOT, make_add_model, make_identity_text_model, onnx_spec, run_server
from tests.factories_risk import transactions
from tests.factories_text import tiny_classifier, tiny_encoder
from tests.factories_vision import COLOURS, make_colour_classifier, solid
from tests.integration.conftest_llm import gemma_file, llm_spec
from tests.integration.conftest_scenarios import tiny_forecaster, tiny_recommender
from tests.integration.schemathesis_names import (
    ADD,
    ADMIN,
    ASR,
    ECHO,
    EMBED,
    FORECAST,
    LLM,
    OCR,
    RECOMMEND,
    REMOVABLE,
    RERANK,
    RISK,
    SCRATCH,
    SCRATCH_KEY,
    VISION,
)

CONFIG = Path(__file__).with_name("schemathesis.toml")
NEW = "sm-new"
"""Registered, loaded, unloaded and removed by the written calls."""
ADD_BODY = {
    "inputs": [
        {"name": "a", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
        {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
    ]
}
CHAT = {"model": LLM, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
MULTIPART, JSON = "multipart/form-data", "application/json"


def _wav() -> bytes:
    """A second of a 440 Hz tone, 16 kHz mono: audio the speech model transcribes quickly."""
    samples = (8000 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(samples.tobytes())
    return buf.getvalue()


def _png() -> str:
    """A small image with a word on it, as a data URL."""
    image = Image.new("RGB", (160, 48), "white")
    ImageDraw.Draw(image).text((10, 10), "AI Mass", fill="black")
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _images(*images: str) -> dict[str, Any]:
    """A JSON classification of ``images`` (data URLs or base64) by the tiny colour model."""
    body = {"model": VISION, "images": [{"image": i} for i in images], "top_k": 2}
    return {"body": body, "media_type": JSON}


def _upload(model: str, data: bytes, **fields) -> dict[str, Any]:
    return {"body": {"file": data, "model": model, **fields}, "media_type": MULTIPART}


RISK_EVENT = {"timestamp": 1_750_000_000, "card": "c1", "amount": 12.5}
RISK_RULES = [{"name": "any", "when": "amount > 0", "action": "block"}]


def _risk_spec(tmp: Path) -> dict:
    """A risk model trained in process on a few generated events (the job is tested in
    test_risk_server.py)."""
    params = check_params({"entities": ["card"], "n_estimators": 10})
    train(transactions(400, seed=5), None, params, tmp / "risk")
    return {"name": RISK, "runtime": "risk", "source": str(tmp / "risk"), "trust_pickle": True}


def _text_spec(name: str, path: Path, task: str) -> dict:
    return {"name": name, "task": task, "runtime": "transformers", "source": str(path)}


@pytest.fixture(scope="module")
def server(tmp_path_factory, pytestconfig):
    tmp = tmp_path_factory.mktemp("schemathesis")
    home = tmp / "home"
    home.mkdir()
    url = f"sqlite:///{home / 'aimass.db'}"
    _, admin = keys.create_key(url, ADMIN, admin=True)
    keys.create_key(url, SCRATCH_KEY)
    add = make_add_model(tmp / "add.onnx")
    models = [
        onnx_spec(ADD, add),
        onnx_spec(SCRATCH, add),
        onnx_spec(REMOVABLE, add),
        onnx_spec(ECHO, make_identity_text_model(tmp / "echo.onnx")),
        _text_spec(EMBED, tiny_encoder(tmp / "encoder", max_length=16), "embedding"),
        _text_spec(RERANK, tiny_classifier(tmp / "cross"), "rerank"),
        llm_spec(gemma_file(pytestconfig), name=LLM),
        {**ocr_builtins(tmp)[0].spec.model_dump(mode="json"), "name": OCR, "sha256": {}},
        {**asr_builtins(tmp)[0].spec.model_dump(mode="json"), "name": ASR, "sha256": {}},
        _risk_spec(tmp),
        {
            "name": VISION,
            "runtime": "vision",
            "task": "classification",
            "source": str(make_colour_classifier(tmp / "colours.onnx")),
            "options": {"size": 8, "scale": 1 / 255, "labels": COLOURS},
        },
        {"name": RECOMMEND, "runtime": "recommend", "source": str(tiny_recommender(tmp / "rec"))},
        {
            "name": FORECAST,
            "runtime": "forecast",
            "trust_pickle": True,
            "source": str(tiny_forecaster(tmp / "forecast")),
        },
    ]
    env = {
        "AIMASS_AUTH_FAILURE_DELAY_S": "0",
        "AIMASS_MAX_BODY_BYTES": "65536",
        "AIMASS_TRIAL_LOAD_TIMEOUT_S": "0",  # registrations still check the files
    }
    with run_server(tmp, models, extra_args=["--require-auth"], env=env) as srv:
        srv.admin_key = admin
        srv.add_file = add
        srv.file_id = _upload_file(srv, admin)
        srv.stores = _stores(srv, admin)
        srv.batch_file, srv.batch_id = _batch(srv, admin)
        srv.ft_file, srv.ft_id = _fine_tuning_job(srv, admin)
        hook = {"url": "http://127.0.0.1:9/hook", "model": RISK}
        auth = {"Authorization": f"Bearer {admin}"}
        made = httpx.post(f"{srv}/v1/risk/webhooks", json=hook, headers=auth)
        srv.webhook_id = made.json()["id"]
        yield srv


@pytest.fixture(scope="module")
def api(server):
    """The document the server serves (reading it needs a key, as every path but the probes)."""
    auth = {"Authorization": f"Bearer {server.admin_key}"}
    return schemathesis.openapi.from_url(f"{server}/openapi.json", headers=auth)


def _upload_file(server, key: str) -> str:
    """A file for the written calls of /v1/files/{file_id} to read (the last one deletes it)."""
    auth = {"Authorization": f"Bearer {key}"}
    form = {"file": ("a.txt", b"hello"), "purpose": (None, "user_data")}
    return httpx.post(f"{server}/v1/files", files=form, headers=auth).json()["id"]


def _stores(server, key: str) -> dict[str, str]:
    """Vector stores for the written calls: one with a file and a batch, one to delete."""
    auth = {"Authorization": f"Bearer {key}"}
    ids = {name: _upload_file(server, key) for name in ("in_store", "batched", "added")}

    def post(path: str, body: dict) -> str:
        r = httpx.post(f"{server}{path}", json=body, headers=auth)
        r.raise_for_status()
        return r.json()["id"]

    store = post("/v1/vector_stores", {"name": "sm", "embedding_model": EMBED,
                                       "file_ids": [ids["in_store"]]})  # fmt: skip
    batch = post(f"/v1/vector_stores/{store}/file_batches", {"file_ids": [ids["batched"]]})
    doomed = post("/v1/vector_stores", {"name": "sm-doomed", "embedding_model": EMBED})
    return {**ids, "store": store, "batch": batch, "doomed": doomed}


def _batch(server, key: str) -> tuple[str, str]:
    """A batch input file (one embeddings request), and a batch made from it."""
    auth = {"Authorization": f"Bearer {key}"}
    line = {"custom_id": "1", "method": "POST", "url": "/v1/embeddings",
            "body": {"model": EMBED, "input": "hi"}}  # fmt: skip
    form = {"file": ("in.jsonl", orjson.dumps(line)), "purpose": (None, "batch")}
    file_id = httpx.post(f"{server}/v1/files", files=form, headers=auth).json()["id"]
    made = {"input_file_id": file_id, "endpoint": "/v1/embeddings", "completion_window": "24h"}
    return file_id, httpx.post(f"{server}/v1/batches", json=made, headers=auth).json()["id"]


def _fine_tuning_job(server, key: str) -> tuple[str, str]:
    """A training file of one pair (too few: its job fails validation, nothing trains), and a
    fine-tuning job made from it."""
    auth = {"Authorization": f"Bearer {key}"}
    form = {
        "file": ("t.jsonl", b'{"anchor": "a", "positive": "b"}'),
        "purpose": (None, "fine-tune"),
    }
    file_id = httpx.post(f"{server}/v1/files", files=form, headers=auth).json()["id"]
    made = {"model": EMBED, "training_file": file_id}
    return file_id, httpx.post(f"{server}/v1/fine_tuning/jobs", json=made, headers=auth).json()[
        "id"
    ]


def _vs(server, file_key: str | None = None, **extra: Any) -> dict[str, Any]:
    params = {"vector_store_id": server.stores["store"]}
    if file_key is not None:
        params["file_id"] = server.stores[file_key]
    return {"path_parameters": {**params, **extra}}


def _f(file_id: str) -> dict[str, Any]:
    return {"path_parameters": {"file_id": file_id}}


def _n(name: str) -> dict[str, Any]:
    return {"path_parameters": {"name": name}}


def _v(name: str) -> dict[str, Any]:
    return {"path_parameters": {"name": name, "version": "1"}}


def _calls(server) -> list[tuple]:
    """``(method, path, parts)`` that must answer 200, or ``(..., status)``, in this order:
    later calls remove what earlier ones created."""
    rerank = {"model": RERANK, "query": "what is paris", "documents": ["paris", "a dog"]}
    transcriptions = "/v1/audio/transcriptions"
    classify = "/v1/images/classifications"
    vs, stores = "/v1/vector_stores/{vector_store_id}", server.stores
    batch = _vs(server, batch_id=stores["batch"])
    batch_made = {"input_file_id": server.batch_file, "endpoint": "/v1/embeddings",
                  "completion_window": "24h"}  # fmt: skip
    job = {"path_parameters": {"job_id": server.batch_id}}
    ft, ft_path = {"path_parameters": {"fine_tuning_job_id": server.ft_id}}, "/v1/fine_tuning/jobs"
    ft_made = {"model": EMBED, "training_file": server.ft_file}
    hook = {"path_parameters": {"webhook_id": server.webhook_id}}
    return [
        ("GET", "/healthz", {}),
        ("GET", "/health", {}),
        ("GET", "/v2/health/live", {}),
        ("GET", "/v2/health/ready", {}),
        ("GET", "/v2", {}),
        ("POST", "/v1/risk/score", {"body": {"model": RISK, "event": RISK_EVENT}}),
        ("POST", "/v1/risk/score", {"body": {"model": RISK, "event": {"card": "c1"}}}, 400),
        ("GET", "/v1/risk/models/{name}/rules", _n(RISK)),
        ("PUT", "/v1/risk/models/{name}/rules", {**_n(RISK), "body": {"rules": RISK_RULES}}),
        ("POST", "/v1/risk/score", {"body": {"model": RISK, "event": RISK_EVENT}}),
        ("GET", "/v1/risk/alerts", {"query": {"model": RISK, "limit": 5}}),
        ("GET", "/v1/risk/alerts/stream", {"query": {"wait_s": 0.2}}),
        ("POST", "/v1/risk/alerts/{alert_id}/ack", {"path_parameters": {"alert_id": 1}}),
        ("POST", "/v1/risk/models", {"body": {"name": "r", "training_file": "file-x"}}, 404),
        ("POST", "/v1/risk/webhooks", {"body": {"url": "http://127.0.0.1:9/b"}}),
        ("GET", "/v1/risk/webhooks", {}),
        ("DELETE", "/v1/risk/webhooks/{webhook_id}", hook),
        ("DELETE", "/v1/risk/webhooks/{webhook_id}", hook, 404),
        ("GET", "/v2/models/stats", {}),
        ("GET", "/v2/models/{name}", _n(ADD)),
        ("GET", "/v2/models/{name}/versions/{version}", _v(ADD)),
        ("GET", "/v2/models/{name}/ready", _n(ADD)),
        ("GET", "/v2/models/{name}/versions/{version}/ready", _v(ADD)),
        ("POST", "/v2/models/{name}/infer", {**_n(ADD), "body": ADD_BODY}),
        ("POST", "/v2/models/{name}/versions/{version}/infer", {**_v(ADD), "body": ADD_BODY}),
        ("POST", "/v2/models/{name}/infer", {**_n("nope"), "body": ADD_BODY}, 404),
        ("GET", "/v2/models/{name}/stats", _n(ADD)),
        ("GET", "/v2/models/{name}/versions/{version}/stats", _v(ADD)),
        ("POST", "/v2/repository/index", {"body": {"ready": True}}),
        ("GET", "/v1/models", {}),
        ("GET", "/v1/models/{model}", {"path_parameters": {"model": EMBED}}),
        ("POST", "/v1/embeddings", {"body": {"model": EMBED, "input": ["hello world"]}}),
        ("POST", "/v1/embeddings", {"body": {"model": EMBED, "input": 5}}, 400),
        ("POST", "/v1/rerank", {"body": rerank}),
        (
            "POST",
            "/v1/files",
            {"body": {"file": b"hi", "purpose": "batch"}, "media_type": "multipart/form-data"},
        ),
        ("GET", "/v1/files", {"query": {"purpose": "user_data", "limit": 1, "order": "asc"}}),
        ("GET", "/v1/files/{file_id}", _f(server.file_id)),
        ("GET", "/v1/files/{file_id}/content", _f(server.file_id)),
        ("DELETE", "/v1/files/{file_id}", _f(server.file_id)),
        ("GET", "/v1/files/{file_id}", _f(server.file_id), 404),
        ("POST", "/v1/completions", {"body": {"model": LLM, "prompt": "hi", "max_tokens": 1}}),
        ("POST", "/v1/completions", {"body": {"model": "nope", "prompt": "hi"}}, 404),
        ("POST", "/v1/vector_stores", {"body": {"name": "sm-new", "embedding_model": EMBED}}),
        ("GET", "/v1/vector_stores", {"query": {"limit": 2, "order": "asc"}}),
        ("GET", vs, _vs(server)),
        ("POST", vs, {**_vs(server), "body": {"name": "renamed", "metadata": {"k": "v"}}}),
        (
            "POST",
            vs + "/search",
            {
                **_vs(server),
                "body": {"query": "hello", "filters": {"type": "eq", "key": "a", "value": 1}},
            },
        ),
        (
            "POST",
            vs + "/search",
            {**_vs(server), "body": {"query": "x", "rewrite_query": True}},
            400,
        ),
        (
            "POST",
            vs + "/files",
            {**_vs(server), "body": {"file_id": stores["added"], "attributes": {"a": 1}}},
        ),
        ("GET", vs + "/files", {**_vs(server), "query": {"filter": "completed", "limit": 5}}),
        ("GET", vs + "/files/{file_id}", _vs(server, "in_store")),
        (
            "POST",
            vs + "/files/{file_id}",
            {**_vs(server, "in_store"), "body": {"attributes": {"b": True}}},
        ),
        ("GET", vs + "/files/{file_id}/content", _vs(server, "in_store")),
        ("POST", vs + "/file_batches", {**_vs(server), "body": {"file_ids": [stores["added"]]}}),
        ("GET", vs + "/file_batches/{batch_id}", batch),
        ("GET", vs + "/file_batches/{batch_id}/files", batch),
        ("POST", vs + "/file_batches/{batch_id}/cancel", batch),
        ("DELETE", vs + "/files/{file_id}", _vs(server, "in_store")),
        ("GET", vs + "/files/{file_id}", _vs(server, "in_store"), 404),
        ("DELETE", vs, {"path_parameters": {"vector_store_id": stores["doomed"]}}),
        ("POST", "/v1/chat/completions", {"body": CHAT}),
        ("POST", "/v1/chat/completions", {"body": {**CHAT, "stream": True}}),
        ("POST", "/v1/ocr", {"body": {"model": OCR, "image": _png()}, "media_type": JSON}),
        ("POST", "/v1/ocr", _upload(OCR, b"not an image"), 400),
        ("POST", transcriptions, _upload(ASR, _wav())),
        ("POST", transcriptions, _upload(ASR, _wav(), response_format="verbose_json")),
        ("POST", transcriptions, _upload(ASR, _wav(), response_format="srt")),
        ("POST", transcriptions, _upload(ASR, _wav(), stream="true")),
        ("POST", transcriptions, _upload(ASR, b"RIFF....WAVEjunk"), 400),
        ("POST", classify, _images(_png())),
        (
            "POST",
            classify,
            {"body": {"file": [solid((200, 30, 30))], "model": VISION}, "media_type": MULTIPART},
        ),
        ("POST", classify, _images("bm90IGFuIGltYWdl"), 400),  # base64 of "not an image"
        ("POST", "/v1/batches", {"body": {**batch_made, "metadata": {"k": "v"}}}),
        ("POST", "/v1/batches", {"body": {**batch_made, "endpoint": "/v1/moderations"}}, 400),
        ("GET", "/v1/batches", {"query": {"limit": 2}}),
        ("GET", "/v1/batches/{batch_id}", {"path_parameters": {"batch_id": server.batch_id}}),
        ("GET", "/v1/jobs", {"query": {"kind": "batch", "limit": 2}}),
        ("GET", "/v1/jobs/{job_id}", job),
        ("GET", "/v1/jobs/{job_id}/events", {**job, "query": {"after": 0, "limit": 5}}),
        ("POST", "/v1/jobs/{job_id}/cancel", job),
        (
            "POST",
            "/v1/batches/{batch_id}/cancel",
            {"path_parameters": {"batch_id": "batch_x"}},
            404,
        ),
        ("POST", ft_path, {"body": {**ft_made, "suffix": "sm", "metadata": {"k": "v"}}}),
        ("POST", ft_path, {"body": {**ft_made, "model": ADD}}, 400),
        ("GET", ft_path, {"query": {"limit": 2}}),
        ("GET", ft_path + "/{fine_tuning_job_id}", ft),
        ("GET", ft_path + "/{fine_tuning_job_id}/events", {**ft, "query": {"limit": 5}}),
        ("GET", ft_path + "/{fine_tuning_job_id}/checkpoints", ft),
        ("POST", ft_path + "/{fine_tuning_job_id}/cancel", ft),
        ("POST", "/v1/recommendations", {"body": {"model": RECOMMEND, "user": "u00001"}}),
        ("POST", "/v1/recommendations/similar", {"body": {"model": RECOMMEND, "item": "i00001"}}),
        ("POST", "/v1/recommendations/similar", {"body": {"model": RECOMMEND, "item": "no"}}, 400),
        (
            "POST",
            "/v1/recommendations/events",
            {"body": {"model": RECOMMEND, "events": [{"user": "u00001", "item": "i00002"}]}},
        ),
        (
            "POST",
            "/v1/recommendations/models",
            {"body": {"name": "sm-reco", "training_file": "file-missing"}},
            404,
        ),
        (
            "POST",
            "/v1/forecasts",
            {"body": {"model": FORECAST, "series_id": "sku-0000", "horizon": 3}},
        ),
        (
            "POST",
            "/v1/forecasts",
            {"body": {"model": FORECAST, "series_id": "no", "horizon": 3}},
            400,
        ),
        (
            "POST",
            "/v1/forecasts/observations",
            {
                "body": {
                    "model": FORECAST,
                    "observations": [
                        {"series_id": "sku-0000", "timestamp": 1740787200, "value": 3}
                    ],
                }
            },
        ),
        (
            "POST",
            "/v1/forecasts/models",
            {"body": {"name": "sm-fc", "training_file": "file-missing"}},
            404,
        ),
        ("GET", "/v1/usage", {"query": {"since": "2020-01-01"}}),
        ("GET", "/v1/keys", {}),
        ("POST", "/v1/keys", {"body": {"name": "sm-created", "models": [ADD], "rpm": 600}}),
        ("POST", "/v1/keys/{name}/rotate", _n("sm-created")),
        ("DELETE", "/v1/keys/{name}", _n("sm-created")),
        ("POST", "/v1/admin/models", {"body": onnx_spec(NEW, server.add_file)}),
        ("GET", "/v1/admin/models", {}),
        ("POST", "/v2/repository/models/{name}/load", _n(NEW)),
        ("POST", "/v1/admin/models/{name}/promote", {**_n(NEW), "body": {"version": 1}}),
        ("PUT", "/v1/admin/models/{name}/route", {**_n(NEW), "body": {"weights": {"1": 100}}}),
        ("GET", "/v1/admin/models/{name}/route", _n(NEW)),
        ("POST", "/v1/admin/models/{name}/rollback", _n(NEW)),
        ("POST", "/v1/admin/models/{name}/rollback", _n(NEW), 409),
        ("PUT", "/v1/admin/models/{name}/route", {**_n(NEW), "body": {"weights": {"1": 90}}}, 400),
        ("POST", "/v1/admin/models/{name}/promote", {**_n(NEW), "body": {"version": 7}}, 404),
        ("POST", "/v2/repository/models/{name}/unload", _n(NEW)),
        ("DELETE", "/v1/admin/models/{name}", _n(NEW)),
        # what schemathesis found, answered since as documented (a 500 or a 200 before)
        ("DELETE", "/v1/admin/models/{name}", {**_n(NEW), "query": {"version": 2**63}}, 400),
        ("POST", "/v1/keys", {"body": {"name": "sm-big", "budget_tokens": 2**63}}, 400),
        ("POST", "/v1/keys", {"body": {"name": "sm-long", "expires": "9999999999w"}}, 400),
        ("POST", "/v2/repository/index", {"body": [None, None]}, 400),
        ("POST", "/v2/repository/models/{name}/load", {**_n(SCRATCH), "body": [None]}, 400),
        ("POST", "/v1/rerank", {"body": {**rerank, "return_documents": 0}}, 400),
    ]


def test_every_operation_answers_a_written_call_as_documented(api, server):
    calls = _calls(server)
    operations = {(op.method.upper(), op.path) for op in (r.ok() for r in api.get_all_operations())}
    assert operations == {(method, path) for method, path, *_ in calls}
    auth = {"Authorization": f"Bearer {server.admin_key}"}
    for method, path, parts, *status in calls:
        case = api[path][method].Case(**parts)
        response = case.call_and_validate(headers=auth, excluded_checks=[positive_data_acceptance])
        assert response.status_code == (status or [200])[0], (method, path, response.text)


@pytest.mark.timeout(900)
def test_every_operation_answers_generated_requests_as_documented(server, tmp_path):
    env = {
        **os.environ,
        "AIMASS_SCHEMATHESIS_URL": str(server),
        "AIMASS_SCHEMATHESIS_KEY": server.admin_key,
    }
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG),
        "run", f"{server}/openapi.json", "--no-color",
        "--report", "junit", "--report-dir", str(tmp_path),
    ]  # fmt: skip
    run = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=850)
    assert run.returncode == 0, run.stdout[-30000:] + run.stderr[-5000:]
    selected, total = re.search(r"Selected: (\d+)/(\d+)", run.stdout).groups()
    tested = re.search(r"Tested: (\d+)", run.stdout).group(1)
    assert selected == total == tested, run.stdout[-3000:]
