"""Replicas as Ray actors on a real two-node Ray cluster, behind the real server.

The cluster is ``ray.cluster_utils.Cluster``: a head and a worker node on this machine, each
with its own raylet and object store (``test_cluster_netns.py`` runs two hosts in network
namespaces, with ``ray start``). Models are served with ``--cluster`` and driven with the
official clients; then the worker node's raylet is killed under load.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import openai
import pytest
import tritonclient.http as triton

from aimass.registry import keys
from aimass.registry.db import get_sessionmaker
from aimass.spec import file_sha256
from tests.conftest import make_slow_model, onnx_spec, run_server
from tests.factories_text import SENTENCES, tiny_encoder
from tests.integration.conftest_llm import gemma_file, llm_spec
from tests.integration.test_postgres import pg_url  # noqa: F401 (the fixture)

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'aimass[ray]')")


HALF_A_CPU = {"num_cpus": 0.5}
"""Every replica of the module fits one 4-CPU node alone, so a lost node's replicas find room."""
OBJECT_STORE = 512 * 2**20
"""Room for the Gemma GGUF (253 MB) in each node's object store (the test default is 150 MB)."""
GREEDY = {"model": "gemma", "prompt": "The capital of France is", "max_tokens": 12}


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    try:
        head = {"num_cpus": 4, "object_store_memory": OBJECT_STORE}
        nodes = Cluster(initialize_head=True, head_node_args=head)
        worker = nodes.add_node(**head)
        nodes.wait_for_nodes()
        ray.init(address=nodes.address, namespace="aimass", log_to_driver=False)
    except Exception as exc:  # no shared memory, no free ports...: say why, do not fail
        pytest.skip(f"Ray cannot start a two-node cluster here: {exc}")
    yield nodes, worker
    ray.shutdown()
    nodes.shutdown()


@pytest.fixture(scope="module")
def models(tmp_path_factory, pytestconfig):
    root = tmp_path_factory.mktemp("cluster-models")
    return {
        "slow": make_slow_model(root / "slow.onnx", depth=2),
        "encoder": tiny_encoder(root / "encoder", max_length=16),
        "gemma": gemma_file(pytestconfig),
    }


def _specs(models: dict, replicas: int = 2) -> list:
    return [
        onnx_spec("slow", models["slow"], replicas=replicas, resources=HALF_A_CPU),
        {
            "name": "tiny",
            "task": "embedding",
            "runtime": "transformers",
            "source": str(models["encoder"]),
            "replicas": replicas,
            "resources": HALF_A_CPU,
        },
        llm_spec(models["gemma"], resources=HALF_A_CPU),
    ]


@pytest.fixture(scope="module")
def server(cluster, models, tmp_path_factory):
    nodes, _ = cluster
    tmp = tmp_path_factory.mktemp("cluster-server")
    with run_server(tmp, _specs(models), extra_args=["--cluster", nodes.address]) as srv:
        yield srv


def _metadata(server: str, name: str) -> dict:
    return httpx.get(f"{server}/v2/models/{name}", timeout=10).json()["parameters"]


def _actor_names() -> list[str]:
    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)]


def _actors(name: str) -> list[dict]:
    """What each live actor of a model reports: its node and the batches it served."""
    names = [n for n in _actor_names() if n.startswith(f"{name}:")]
    handles = [ray.get_actor(n, namespace="aimass") for n in names]
    return ray.get([h.report.remote() for h in handles], timeout=30)


def _infer_slow(
    server: str, x: float, model: str = "slow", headers: dict | None = None
) -> httpx.Response:
    body = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [x]}]}
    return httpx.post(f"{server}/v2/models/{model}/infer", json=body, headers=headers, timeout=30)


def test_replicas_spread_over_both_nodes_from_checked_copies(server, cluster):
    nodes, worker = cluster
    both = {nodes.head_node.node_id, worker.node_id}
    for name, files in (("slow", 1), ("tiny", 2)):
        meta = _metadata(server, name)
        assert meta["replicas"] == 2 and set(meta["nodes"]) == both, meta
        assert meta["source"].startswith("/tmp/aimass-ray/"), "loaded from the node's own copy"
        assert meta["files_verified"] >= files


def test_v2_answers_equal_the_model_and_land_on_both_nodes(server, models):
    client = triton.InferenceServerClient(url=server.removeprefix("http://"), concurrency=8)
    x = np.array([[0.5]], dtype=np.float32)
    expected = ort.InferenceSession(str(models["slow"])).run(None, {"x": x})[0]
    inputs = [triton.InferInput("x", [1, 1], "FP32")]
    inputs[0].set_data_from_numpy(x)
    pending = [client.async_infer("slow", inputs) for _ in range(24)]
    for result in (p.get_result() for p in pending):
        np.testing.assert_allclose(result.as_numpy("y"), expected, rtol=1e-6)
    client.close()
    served = {a["node_id"]: a["batches"] for a in _actors("slow")}
    assert len(served) == 2 and all(served.values()), served


def test_the_same_specs_on_local_processes_answer_identically(server, models, tmp_path_factory):
    """v2 tensors, OpenAI embeddings and greedy text (whole and streamed), both backends."""
    with run_server(tmp_path_factory.mktemp("local"), _specs(models, replicas=1)) as local:
        expected = _answers(local)
    got = _answers(server)
    assert got["y"] == expected["y"] and got["text"] == expected["text"] and got["text"]
    np.testing.assert_allclose(got["embeddings"], expected["embeddings"], rtol=0, atol=1e-6)
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)
    chunks = client.completions.create(**GREEDY, temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == expected["text"]


def _answers(server: str) -> dict:
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)
    vectors = client.embeddings.create(model="tiny", input=SENTENCES).data
    return {
        "y": [_infer_slow(server, x).json()["outputs"][0]["data"] for x in (0.5, -2.0, 3.0)],
        "embeddings": np.array([d.embedding for d in vectors], dtype=np.float32),
        "text": client.completions.create(**GREEDY, temperature=0).choices[0].text,
    }


def test_two_gateways_on_one_registry_share_models_and_keys(
    cluster,
    models,
    pg_url,  # noqa: F811 (the fixture)
    tmp_path_factory,
):
    """Load, a new key and unload, each made through gateway A, reach gateway B in seconds."""
    get_sessionmaker(pg_url)  # the schema, before the admin key is written
    _, admin = keys.create_key(pg_url, "admin", admin=True)
    as_admin = {"Authorization": f"Bearer {admin}"}
    env = {"AIMASS_DATABASE_URL": pg_url}
    args = ["--require-auth", "--cluster", cluster[0].address]
    tmp = tmp_path_factory.mktemp("gateways")
    with (
        run_server(tmp / "a", env=env, extra_args=args) as a,
        run_server(tmp / "b", env=env, extra_args=args) as b,
    ):
        spec = onnx_spec("shared", models["slow"], resources=HALF_A_CPU)
        r = httpx.post(f"{a}/v1/admin/models?load=true", json=spec, headers=as_admin, timeout=60)
        assert r.status_code == 200, r.text
        assert _within(10, lambda: _infer_slow(b, 1.0, "shared", as_admin).status_code == 200)
        r = httpx.post(f"{a}/v1/keys", json={"name": "user"}, headers=as_admin, timeout=10)
        as_user = {"Authorization": f"Bearer {r.json()['key']}"}
        assert _within(10, lambda: _infer_slow(b, 1.0, "shared", as_user).status_code == 200)
        r = httpx.post(f"{a}/v2/repository/models/shared/unload", headers=as_admin, timeout=30)
        assert r.status_code == 200, r.text
        assert _within(10, lambda: _infer_slow(b, 1.0, "shared", as_user).status_code == 404)


def _within(seconds: float, check) -> bool:
    end = time.monotonic() + seconds
    while not check():
        if time.monotonic() > end:
            return False
        time.sleep(0.2)
    return True


@dataclass(frozen=True)
class Answer:
    sent: float
    answered: float
    status: int
    retry_after: str | None


def _kill_under_load(server: str, kill: Callable[[], None]) -> tuple[list[Answer], float]:
    """Four clients call the slow model; ``kill`` runs 2 s in. They go on for 6 s, and until
    four requests sent after the first 503 came back were answered (the server knows of the
    loss by then), for 40 s at most. Their answers in the order they came, and when the kill
    happened."""
    answers: list[Answer] = []

    def after_loss() -> int:
        lost = [a.answered for a in answers if a.status == 503]
        return sum(1 for a in answers if lost and a.sent > min(lost))

    def load(start: float) -> None:
        while time.monotonic() - start < 6 or (after_loss() < 4 and time.monotonic() - start < 40):
            sent = time.monotonic()
            r = _infer_slow(server, 1.0)
            answers.append(
                Answer(sent, time.monotonic(), r.status_code, r.headers.get("retry-after"))
            )

    start = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        running = [pool.submit(load, start) for _ in range(4)]
        time.sleep(2.0)
        killed = time.monotonic()
        kill()
        for f in running:
            f.result()
    return answers, killed


def check_failover(answers: list[Answer]) -> None:
    """The lost replica's requests failed with 503 and ``Retry-After``; every request sent
    after the first such answer (the loss is known) was served by the live replica."""
    statuses = [a.status for a in answers]
    assert set(statuses) <= {200, 503}, statuses
    assert 503 in statuses, "the lost replica was computing when its node went"
    assert all(a.retry_after for a in answers if a.status == 503)
    known = min(a.answered for a in answers if a.status == 503)
    later = [a.status for a in answers if a.sent > known]
    assert len(later) >= 4 and set(later) == {200}, (
        "later requests go to the live replica",
        statuses,
    )


def test_a_lost_node_fails_in_flight_requests_with_503_then_its_replicas_come_back(server, cluster):
    nodes, worker = cluster
    restarts = _metadata(server, "slow")["restarts"]
    answers, killed = _kill_under_load(server, lambda: nodes.remove_node(worker, False))
    check_failover(answers)
    head = nodes.head_node.node_id
    while time.monotonic() - killed < 30:
        meta = _metadata(server, "slow")
        if meta["replicas"] == 2 and meta["restarts"] > restarts:
            break
        time.sleep(0.5)
    assert meta["replicas"] == 2 and meta["nodes"] == [head], meta
    assert _infer_slow(server, 1.0).status_code == 200


def test_a_killed_actor_is_replaced_from_a_checked_copy_of_the_files(server, models):
    """The node's copy was damaged: the new replica finds it wrong, fetches it again, and
    loads only once it matches the registry's digest."""
    copy = Path(_metadata(server, "slow")["source"])
    copy.write_bytes(b"damaged")
    restarts = _metadata(server, "slow")["restarts"]
    victim = next(n for n in _actor_names() if n.startswith("slow:"))
    ray.kill(ray.get_actor(victim, namespace="aimass"))
    assert _within(30, lambda: _metadata(server, "slow")["restarts"] > restarts)
    assert _within(30, lambda: _metadata(server, "slow")["replicas"] == 2)
    assert file_sha256(copy) == file_sha256(models["slow"])
    assert _infer_slow(server, 1.0).status_code == 200
