"""Model versions on ``/v1``, with the official ``openai`` SDK against a real server:
``/v1/models`` reports the version a plain name is served by and when it was registered, and
``name:version`` works on every ``/v1`` route (embeddings, rerank, completions, chat, and the
model itself), while a version that is not loaded is a 404 that says so."""

from __future__ import annotations

import time
from datetime import UTC

import httpx
import numpy as np
import openai
import pytest

from aimass.registry import models as registry
from tests.conftest import run_server
from tests.factories_text import tiny_classifier, tiny_encoder
from tests.integration.conftest_llm import gemma_file, llm_spec


def _text_spec(name: str, source, version: int = 1, task: str = "embedding") -> dict:
    return {
        "name": name,
        "version": version,
        "task": task,
        "runtime": "transformers",
        "source": str(source),
        "description": f"{name} {version}, a tiny random BERT",
    }


@pytest.fixture(scope="module")
def server(pytestconfig, tmp_path_factory):
    root = tmp_path_factory.mktemp("versions")
    gemma = llm_spec(gemma_file(pytestconfig), limits={"max_concurrent": 1})
    specs = [
        _text_spec("tiny", tiny_encoder(root / "encoder-1", seed=1), version=1),
        _text_spec("tiny", tiny_encoder(root / "encoder-2", seed=2), version=2),
        _text_spec("tiny-rerank", tiny_classifier(root / "cross"), task="rerank"),
        gemma.model_dump(mode="json"),
    ]
    with run_server(root, models=specs) as url:
        yield url


@pytest.fixture
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)


def _embedding(client: openai.OpenAI, model: str) -> np.ndarray:
    answer = client.embeddings.create(model=model, input="hello world")
    assert answer.model == model
    return np.array(answer.data[0].embedding)


def _registered_at(server) -> dict[tuple[str, int], int]:
    entries = registry.list_models(f"sqlite:///{server.home / 'aimass.db'}")
    return {e.spec.key: int(e.created_at.replace(tzinfo=UTC).timestamp()) for e in entries}


def test_models_list_reports_the_served_version_and_registration_time(server, client):
    listed = {m.id: m for m in client.models.list()}
    assert set(listed) == {"tiny", "tiny-rerank", "gemma"}
    tiny = listed["tiny"]
    assert (tiny.version, tiny.versions, tiny.state) == (2, [1, 2], "ready")
    assert tiny.task == "embedding" and tiny.owned_by == "aimass"
    assert tiny.description == "tiny 2, a tiny random BERT"
    registered = _registered_at(server)
    assert tiny.created == registered[("tiny", 2)]
    assert listed["gemma"].created == registered[("gemma", 1)]
    assert (listed["gemma"].version, listed["gemma"].versions) == (1, [1])
    time.sleep(1.1)  # a registration time, not the time of the listing
    assert {m.id: m.created for m in client.models.list()} == {
        m.id: m.created for m in listed.values()
    }


def test_models_retrieve_takes_name_and_name_version(client):
    assert client.models.retrieve("tiny").version == 2
    one = client.models.retrieve("tiny:1")
    assert (one.id, one.version, one.versions) == ("tiny:1", 1, [1])
    assert one.description == "tiny 1, a tiny random BERT"
    with pytest.raises(openai.NotFoundError, match="'tiny:3' is not loaded"):
        client.models.retrieve("tiny:3")
    with pytest.raises(openai.BadRequestError, match="positive integer"):
        client.models.retrieve("tiny:x")


def test_embeddings_by_version_and_plain_name(client):
    first, second, plain = (_embedding(client, m) for m in ("tiny:1", "tiny:2", "tiny"))
    assert np.allclose(plain, second) and not np.allclose(first, second)
    with pytest.raises(openai.NotFoundError, match="model 'tiny' version 3 is not loaded"):
        client.embeddings.create(model="tiny:3", input="hello")


def test_rerank_completions_and_chat_by_version(server, client):
    body = {"query": "cats", "documents": ["dogs", "cats"]}
    r = httpx.post(f"{server}/v1/rerank", json={"model": "tiny-rerank:1", **body})
    assert r.status_code == 200 and len(r.json()["results"]) == 2, r.text
    r = httpx.post(f"{server}/v1/rerank", json={"model": "tiny-rerank:2", **body})
    assert r.status_code == 404 and "version 2 is not loaded" in r.json()["error"]["message"]
    done = client.completions.create(model="gemma:1", prompt="The sky is", max_tokens=2)
    assert done.model == "gemma:1" and done.choices[0].text
    messages = [{"role": "user", "content": "Say hi"}]
    chat = client.chat.completions.create(model="gemma:1", messages=messages, max_tokens=2)
    assert chat.model == "gemma:1" and chat.choices[0].message.content is not None
    with pytest.raises(openai.NotFoundError, match="version 2 is not loaded"):
        client.completions.create(model="gemma:2", prompt="x", max_tokens=1)
    with pytest.raises(openai.NotFoundError, match="version 2 is not loaded"):
        client.chat.completions.create(model="gemma:2", messages=messages, max_tokens=1)


def test_unloading_the_newest_moves_the_plain_name_back(server, client):
    first = _embedding(client, "tiny:1")
    r = httpx.post(
        f"{server}/v2/repository/models/tiny/unload", json={"parameters": {"version": 2}}
    )
    assert r.status_code == 200, r.text
    tiny = client.models.retrieve("tiny")
    assert (tiny.version, tiny.versions) == (1, [1])
    assert np.allclose(_embedding(client, "tiny"), first)
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="tiny:2", input="hello")


def test_the_documented_offline_encoder_folder_registers_and_serves(server, client, tmp_path):
    """docs/embeddings.md: the built-in's package unpacks a folder anywhere, offline."""
    import all_minilm_l6_v2

    folder = all_minilm_l6_v2.extract_model(str(tmp_path / "models"))
    spec = {"name": "minilm", "task": "embedding", "runtime": "transformers", "source": str(folder)}
    r = httpx.post(f"{server}/v1/admin/models", params={"load": "true"}, json=spec, timeout=300)
    assert r.status_code == 200, r.text
    vector = _embedding(client, "minilm:1")
    assert vector.shape == (384,) and abs(np.linalg.norm(vector) - 1) < 1e-4
