"""/v1/vector_stores against a real server, driven by the official openai SDK.

One server with auth on (an admin key and two user keys), a tiny encoder as the store's
embedding model and a tiny cross-encoder as a rerank model. Files are uploaded through
``/v1/files`` and ingested in the background; the tests poll until they are done.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from aimass.registry import keys
from tests.conftest import run_server
from tests.factories_text import tiny_classifier, tiny_encoder

DOCS = {
    "animals.txt": "the zebra and the giraffe live on the savanna. lions hunt the zebra at night.",
    "space.txt": "rockets carry satellites into orbit. the moon orbits the earth every month.",
    "cooking.md": "# Bread\n\nknead the dough, let it rise, then bake the bread in a hot oven.",
}
ATTRIBUTES = {
    "animals.txt": {"topic": "nature", "year": 2019, "public": True},
    "space.txt": {"topic": "science", "year": 2023, "public": True},
    "cooking.md": {"topic": "food", "year": 2021, "public": False},
}


def _spec(name: str, path: Path, task: str = "embedding") -> dict:
    return {
        "name": name,
        "task": task,
        "runtime": "transformers",
        "source": str(path),
        "batching": {"max_batch_size": 16, "max_batch_tokens": 2048},
    }


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stores")
    home = tmp / "home"
    home.mkdir()
    url = f"sqlite:///{home / 'aimass.db'}"
    _, admin = keys.create_key(url, "admin", admin=True)
    _, alice = keys.create_key(url, "alice")
    _, bob = keys.create_key(url, "bob")
    models = [
        _spec("tiny", tiny_encoder(tmp / "encoder", max_length=64)),
        _spec("tiny-rerank", tiny_classifier(tmp / "cross"), task="rerank"),
    ]
    env = {"AIMASS_VECTOR_STORE_DEFAULT_MODEL": "tiny"}
    with run_server(tmp, models, extra_args=["--require-auth"], env=env) as srv:
        yield {"base": str(srv), "server": srv, "admin": admin, "alice": alice, "bob": bob}


def client(env, who: str = "alice") -> openai.OpenAI:
    return openai.OpenAI(base_url=env["base"] + "/v1", api_key=env[who], max_retries=0)


def upload(c: openai.OpenAI, name: str, text: str) -> str:
    return c.files.create(file=(name, text.encode()), purpose="assistants").id


def wait_done(c: openai.OpenAI, store_id: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        store = c.vector_stores.retrieve(store_id)
        if store.file_counts.in_progress == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"{store_id} still ingesting after {timeout_s} s")


@pytest.fixture(scope="module")
def store(env):
    c = client(env)
    ids = {name: upload(c, name, text) for name, text in DOCS.items()}
    vs = c.vector_stores.create(name="docs", metadata={"team": "search"})
    for name, file_id in ids.items():
        c.vector_stores.files.create(vs.id, file_id=file_id, attributes=ATTRIBUTES[name])
    wait_done(c, vs.id)
    return {"id": vs.id, "files": ids}


def texts(page) -> list[str]:
    return [r.content[0].text for r in page.data]


def test_files_are_ingested_with_their_attributes(env, store):
    c = client(env)
    listed = c.vector_stores.files.list(store["id"], filter="completed")
    assert {f.id for f in listed.data} == set(store["files"].values())
    one = c.vector_stores.files.retrieve(store["files"]["space.txt"], vector_store_id=store["id"])
    assert one.status == "completed" and one.attributes == ATTRIBUTES["space.txt"]
    assert one.usage_bytes > 0
    vs = c.vector_stores.retrieve(store["id"])
    assert vs.file_counts.completed == 3 and vs.status == "completed"
    assert vs.metadata == {"team": "search"} and vs.usage_bytes > 0
    content = c.vector_stores.files.content(
        store["files"]["cooking.md"], vector_store_id=store["id"]
    )
    assert "knead the dough" in "".join(p.text for p in content)


@pytest.mark.parametrize("mode", ["keyword", "hybrid", "vector"])
def test_search_finds_the_file_that_holds_the_words(env, store, mode):
    c = client(env)
    page = c.vector_stores.search(
        store["id"], query="zebra savanna", max_num_results=2, extra_body={"search_mode": mode}
    )
    assert 1 <= len(page.data) <= 2
    assert all(0.0 <= r.score <= 1.0 for r in page.data)
    assert [r.score for r in page.data] == sorted((r.score for r in page.data), reverse=True)
    if mode != "vector":  # the tiny encoder's vectors are random: only keywords are meaningful
        assert page.data[0].file_id == store["files"]["animals.txt"]
        assert page.data[0].filename == "animals.txt"
        assert page.data[0].attributes == ATTRIBUTES["animals.txt"]


def test_filters_select_files_by_attributes(env, store):
    c = client(env)

    def found(flt) -> set[str]:
        page = c.vector_stores.search(
            store["id"], query="the", filters=flt, extra_body={"search_mode": "keyword"}
        )
        names = {v: k for k, v in store["files"].items()}
        return {names[r.file_id] for r in page.data}

    assert found({"type": "eq", "key": "topic", "value": "food"}) == {"cooking.md"}
    assert found({"type": "gte", "key": "year", "value": 2021}) == {"space.txt", "cooking.md"}
    assert found({"type": "ne", "key": "public", "value": True}) == {"cooking.md"}
    assert found({"type": "in", "key": "topic", "value": ["nature", "food"]}) == {
        "animals.txt",
        "cooking.md",
    }
    both = {
        "type": "or",
        "filters": [
            {"type": "lt", "key": "year", "value": 2020},
            {
                "type": "and",
                "filters": [
                    {"type": "eq", "key": "public", "value": True},
                    {"type": "gt", "key": "year", "value": 2022},
                ],
            },
        ],
    }
    assert found(both) == {"animals.txt", "space.txt"}
    assert found({"type": "eq", "key": "missing", "value": "x"}) == set()


def test_rerank_with_a_loaded_rerank_model(env, store):
    c = client(env)
    page = c.vector_stores.search(
        store["id"], query="moon orbit", extra_body={"rerank_model": "tiny-rerank"}
    )
    assert len(page.data) == 3
    assert [r.score for r in page.data] == sorted((r.score for r in page.data), reverse=True)
    with pytest.raises(openai.BadRequestError, match="rerank"):
        c.vector_stores.search(store["id"], query="moon", extra_body={"rerank_model": "tiny"})


def test_rerank_candidates_and_rrf_fusion_with_the_search_order(env, store):
    c = client(env)

    def files(**extra) -> list[str]:
        page = c.vector_stores.search(store["id"], query="the moon and the zebra", extra_body=extra)
        return [r.filename for r in page.data]

    searched = files()
    reranked = files(rerank_model="tiny-rerank")
    assert files(rerank_model="tiny-rerank", rerank_candidates=1, max_num_results=1) == [
        searched[0]
    ]
    fused = {
        name: 1 / (61 + searched.index(name)) + 1 / (61 + reranked.index(name)) for name in searched
    }
    page = c.vector_stores.search(
        store["id"],
        query="the moon and the zebra",
        extra_body={"rerank_model": "tiny-rerank", "rerank_fusion": "rrf"},
    )
    scores = {r.filename: r.score for r in page.data}
    assert scores == pytest.approx({name: f * 61 / 2 for name, f in fused.items()})
    assert [r.score for r in page.data] == sorted(scores.values(), reverse=True)
    with pytest.raises(openai.BadRequestError, match="rerank_fusion"):
        files(rerank_model="tiny-rerank", rerank_fusion="mean")


def test_score_threshold_and_unsupported_options(env, store):
    c = client(env)
    page = c.vector_stores.search(
        store["id"],
        query="zebra",
        ranking_options={"score_threshold": 0.99},
        extra_body={"search_mode": "keyword"},
    )
    assert [r.file_id for r in page.data] == [store["files"]["animals.txt"]]
    with pytest.raises(openai.BadRequestError) as err:
        c.vector_stores.search(store["id"], query="zebra", rewrite_query=True)
    assert err.value.body["param"] == "rewrite_query"
    with pytest.raises(openai.BadRequestError):
        c.vector_stores.search(
            store["id"], query="zebra", filters={"type": "eq", "key": "a", "value": [1]}
        )


def test_deleting_a_file_removes_it_from_results_at_once(env):
    c = client(env)
    keep, drop = upload(c, "keep.txt", "alpha beta gamma"), upload(c, "drop.txt", "alpha delta")
    vs = c.vector_stores.create(name="deletes", file_ids=[keep, drop])
    wait_done(c, vs.id)
    query = {"query": "alpha", "extra_body": {"search_mode": "hybrid"}}
    assert {r.file_id for r in c.vector_stores.search(vs.id, **query).data} == {keep, drop}
    deleted = c.vector_stores.files.delete(drop, vector_store_id=vs.id)
    assert deleted.deleted
    assert {r.file_id for r in c.vector_stores.search(vs.id, **query).data} == {keep}
    with pytest.raises(openai.NotFoundError):
        c.vector_stores.files.retrieve(drop, vector_store_id=vs.id)
    assert c.vector_stores.delete(vs.id).deleted
    with pytest.raises(openai.NotFoundError):
        c.vector_stores.retrieve(vs.id)


def test_stores_belong_to_their_key(env, store):
    alice, bob, admin = client(env), client(env, "bob"), client(env, "admin")
    with pytest.raises(openai.NotFoundError):
        bob.vector_stores.retrieve(store["id"])
    with pytest.raises(openai.NotFoundError):
        bob.vector_stores.search(store["id"], query="zebra")
    with pytest.raises(openai.NotFoundError):
        bob.vector_stores.files.delete(store["files"]["space.txt"], vector_store_id=store["id"])
    assert store["id"] not in {s.id for s in bob.vector_stores.list()}
    assert store["id"] in {s.id for s in alice.vector_stores.list()}
    assert admin.vector_stores.retrieve(store["id"]).id == store["id"]
    own = bob.vector_stores.create(name="bob's")
    with pytest.raises(openai.NotFoundError):  # alice's file is not bob's to add
        bob.vector_stores.files.create(own.id, file_id=store["files"]["space.txt"])
    updated = bob.vector_stores.update(own.id, name="renamed", metadata={"k": "v"})
    assert updated.name == "renamed" and updated.metadata == {"k": "v"}
    bob.vector_stores.delete(own.id)


def test_file_batches(env):
    c = client(env)
    ids = [upload(c, f"b{i}.txt", f"batch document number {i} about rivers") for i in range(3)]
    vs = c.vector_stores.create(name="batches")
    batch = c.vector_stores.file_batches.create(vs.id, file_ids=ids, attributes={"src": "b"})
    assert batch.object == "vector_store.files_batch" and batch.file_counts.total == 3
    deadline = time.monotonic() + 60
    while batch.status == "in_progress" and time.monotonic() < deadline:
        time.sleep(0.1)
        batch = c.vector_stores.file_batches.retrieve(batch.id, vector_store_id=vs.id)
    assert batch.status == "completed" and batch.file_counts.completed == 3
    listed = c.vector_stores.file_batches.list_files(batch.id, vector_store_id=vs.id)
    assert sorted(f.id for f in listed.data) == sorted(ids)
    assert all(f.attributes == {"src": "b"} for f in listed.data)


def test_unextractable_files_fail_with_a_reason(env):
    c = client(env)
    bad = c.files.create(file=("blob.bin", b"\x00\x01\x02binary"), purpose="assistants").id
    vs = c.vector_stores.create(name="bad", file_ids=[bad])
    wait_done(c, vs.id)
    f = c.vector_stores.files.retrieve(bad, vector_store_id=vs.id)
    assert f.status == "failed" and f.last_error.code == "invalid_file"
    assert f.last_error.message


def test_ingestion_and_searches_count_embedded_tokens(env, store):
    admin = {"Authorization": f"Bearer {env['admin']}"}
    rows = httpx.get(env["base"] + "/v1/usage?key=alice&model=tiny", headers=admin).json()
    assert sum(r["prompt_tokens"] for r in rows["data"]) > 0


def test_kill_9_mid_ingestion_loses_nothing_acknowledged(tmp_path):
    """The server is killed (SIGKILL) while files are ingesting; after a restart every file is
    completed or failed with a reason, searches answer, and the index holds exactly the
    database's chunks."""
    from usearch.index import Index

    from aimass.search import records

    model = _spec("tiny", tiny_encoder(tmp_path / "encoder", max_length=64))
    env = {"AIMASS_VECTOR_STORE_DEFAULT_MODEL": "tiny"}
    env["AIMASS_VECTOR_STORE_EMBED_BATCH"] = "1"  # slow ingestion: the kill lands mid-way
    words = [
        "river",
        "mountain",
        "forest",
        "desert",
        "ocean",
        "valley",
        "island",
        "canyon",
        "glacier",
        "meadow",
    ]
    with run_server(tmp_path, [model], env=env) as srv:
        c = openai.OpenAI(base_url=str(srv) + "/v1", api_key="none", max_retries=0)
        body = lambda i: " ".join(words[(i + j) % 10] for j in range(1500))  # noqa: E731
        ids = [upload(c, f"doc{i}.txt", f"document {i}. " + body(i)) for i in range(12)]
        vs = c.vector_stores.create(name="crash", file_ids=ids)
        deadline = time.monotonic() + 60
        while c.vector_stores.retrieve(vs.id).file_counts.completed < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        before = c.vector_stores.retrieve(vs.id).file_counts
        srv.proc.kill()
        srv.proc.wait()
    assert before.in_progress > 0, "ingestion finished before the kill; make the files larger"
    with run_server(tmp_path, [model], env=env) as srv:
        c = openai.OpenAI(base_url=str(srv) + "/v1", api_key="none", max_retries=0)
        assert c.vector_stores.search(vs.id, query="river").data  # answers during recovery
        wait_done(c, vs.id, timeout_s=120)
        files = c.vector_stores.files.list(vs.id, limit=100).data
        assert {f.status for f in files} <= {"completed", "failed"}
        assert all(f.last_error and f.last_error.message for f in files if f.status == "failed")
        assert c.vector_stores.retrieve(vs.id).file_counts.completed >= before.completed
        assert c.vector_stores.search(vs.id, query="document 11 glacier").data
        url = f"sqlite:///{srv.home / 'aimass.db'}"
        path = srv.home / "stores" / f"{vs.id}.usearch"
        deadline = time.monotonic() + 30
        while True:  # the index file is written when ingestion goes idle
            saved = Index.restore(str(path)) if path.exists() else None
            keys = np.sort(np.asarray(saved.keys, dtype=np.int64)) if saved else None
            if keys is not None and np.array_equal(keys, records.chunk_ids(url, vs.id)):
                break
            assert time.monotonic() < deadline, "the index file disagrees with the database"
            time.sleep(0.2)


def test_cli_create_add_search_list_delete(env, tmp_path):
    from typer.testing import CliRunner

    from aimass.cli.main import app

    runner = CliRunner()
    auth = ["--url", env["base"], "--api-key", env["alice"]]
    (tmp_path / "a.txt").write_text("volcanoes erupt lava and ash")
    (tmp_path / "b.md").write_text("# Tides\n\nthe moon pulls the tides of the ocean")

    def run(*args: str) -> str:
        result = runner.invoke(app, [*args, *auth])
        assert result.exit_code == 0, result.output
        return result.stdout.strip()

    store_id = run("stores", "create", "cli", "--file", str(tmp_path / "a.txt"))
    assert store_id.startswith("vs_")
    run("stores", "add", store_id, str(tmp_path / "b.md"), "--attr", "kind=notes")
    found = run("stores", "search", store_id, "tides ocean", "--mode", "keyword")
    assert found.splitlines()[0].split()[1] == "b.md"
    assert store_id in run("stores", "list")
    run("stores", "delete", store_id)
    assert store_id not in run("stores", "list")
