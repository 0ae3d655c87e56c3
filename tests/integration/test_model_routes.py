"""Serving routes on a real server: a 10 % canary gets 10 % of 2,000 requests (by the answers'
``model_version`` and by ``/metrics``), promote / route / rollback over HTTP and the CLI with
their errors and audit entries, and a routed version that cannot load causes no 503."""

from __future__ import annotations

import re
import time
from collections import Counter

import httpx
import pytest

from aimass.config import Settings
from aimass.registry import audit
from tests.conftest import make_add_model, onnx_spec, run_server
from tests.integration.test_registry_lifecycle import BODY, cli

ADMIN = "/v1/admin/models/adder"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("routes")
    model = make_add_model(tmp / "add.onnx")
    specs = [onnx_spec("adder", model, version=v, batching={"max_batch_size": 8}) for v in (1, 2)]
    with run_server(tmp, specs) as server:
        yield server


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server, timeout=30) as client:
        yield client


def served(client: httpx.Client, n: int) -> Counter:
    """The versions that answered ``n`` plain-name requests (every answer must be a 200)."""
    counts: Counter = Counter()
    for _ in range(n):
        r = client.post("/v2/models/adder/infer", json=BODY)
        assert r.status_code == 200, r.text
        counts[int(r.json()["model_version"])] += 1
    return counts


def requests_metric(client: httpx.Client, version: int) -> float:
    text = client.get("/metrics").text
    pattern = rf'aimass_requests_total{{model="adder",status="200",version="{version}"}} (\S+)'
    match = re.search(pattern, text)
    return float(match.group(1)) if match else 0.0


def _state(client: httpx.Client, version: int) -> str:
    listing = client.get("/v1/admin/models").json()["data"]
    return next(d["state"] for d in listing if d["version"] == version)


def audited(server, action: str) -> list[tuple[str, str]]:
    url = Settings(home=server.home).resolved_database_url
    return [(e["target"], e["result"]) for e in audit.entries(url, action=action)]


def test_a_ten_percent_canary_gets_ten_percent_of_2000_requests(client):
    r = client.put(f"{ADMIN}/route", json={"weights": {"1": 90, "2": 10}})
    assert r.status_code == 200, r.text
    assert r.json()["weights"] == {"1": 90, "2": 10}
    before = requests_metric(client, 2)
    counts = served(client, 2000)
    assert set(counts) == {1, 2}
    assert 0.07 <= counts[2] / 2000 <= 0.13, counts
    assert requests_metric(client, 2) - before == counts[2]
    listing = {d["version"]: d.get("weight") for d in client.get("/v1/admin/models").json()["data"]}
    assert listing == {1: 90, 2: 10}
    # a request that names a version gets that version, whatever the route
    assert (
        client.post("/v2/models/adder/versions/2/infer", json=BODY).json()["model_version"] == "2"
    )


def test_promote_and_rollback_over_http_with_their_errors_audited(server, client):
    r = client.post(f"{ADMIN}/promote", json={"version": 2})
    assert r.status_code == 200, r.text
    assert served(client, 20) == {2: 20}
    assert client.get("/v1/models/adder").json()["version"] == 2
    r = client.post(f"{ADMIN}/rollback")
    assert r.status_code == 200 and r.json()["weights"] == {"1": 90, "2": 10}
    routing = client.get(f"{ADMIN}/route").json()
    assert routing["route"]["weights"] == {"1": 90, "2": 10}
    assert [h["rolled_back_at"] is None for h in routing["history"]][:2] == [False, True]

    errors = [
        (client.post(f"{ADMIN}/promote", json={"version": 9}), 404, "no version 9"),
        (client.post("/v1/admin/models/nope/promote", json={"version": 1}), 404, "'nope'"),
        (client.put(f"{ADMIN}/route", json={"weights": {"1": 90, "2": 5}}), 400, "sum to 100"),
        (client.put(f"{ADMIN}/route", json={"weights": {"1": 50, "9": 50}}), 404, "version 9"),
        (client.put(f"{ADMIN}/route", json={"weights": {"x": 100}}), 400, "weights"),
        (client.post("/v1/admin/models/nope/rollback"), 404, "'nope'"),
    ]
    for r, status, text in errors:
        assert r.status_code == status, r.text
        assert text in r.json()["error"]["message"]
    assert errors[2][0].json()["error"]["param"] == "weights"
    r = client.post(f"{ADMIN}/rollback")  # the canary is the first route: nothing earlier
    assert r.status_code == 409 and "no earlier route" in r.json()["error"]["message"]
    assert ("adder:2", "ok") in audited(server, "model.promote")
    assert ("adder:9", "error 404: model 'adder' has no version 9") in audited(
        server, "model.promote"
    )
    assert any(
        res.startswith("error 400: weights must sum") for _, res in audited(server, "model.route")
    )
    assert audited(server, "model.rollback")[:3] == [
        ("adder", "error 409: model 'adder' has no earlier route to roll back to"),
        ("nope", "error 404: model 'nope' is not registered"),
        ("adder", "ok"),
    ]


def test_cli_routes_reach_the_running_server_and_a_broken_version_causes_no_503(
    server, client, tmp_path
):
    broken = make_add_model(tmp_path / "broken.onnx")
    added = cli(server.home, "models", "add", "adder", "--runtime", "onnx", "--source",
                str(broken), "--version", "3", "--no-copy")  # fmt: skip
    assert added.returncode == 0, added.stderr
    broken.write_bytes(b"not onnx any more")  # the server's load of version 3 will fail

    bad = cli(server.home, "models", "route", "adder", "--weights", "1:50,3:40")
    assert bad.returncode == 1 and "weights must sum to 100" in bad.stderr
    assert cli(server.home, "models", "promote", "adder", "9").returncode == 1
    done = cli(server.home, "models", "route", "adder", "--weights", "1:50,3:50")
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 30
    while client.get(f"{ADMIN}/route").json()["route"]["weights"] != {"1": 50, "3": 50}:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    while _state(client, 3) != "failed":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert served(client, 200) == {1: 200}
    assert "routed version(s) 3 not ready" in server.log()

    listing = cli(server.home, "models", "list").stdout
    assert re.search(r"adder\s+3 .* 50%", listing), listing
    rolled = cli(server.home, "models", "rollback", "adder")
    assert rolled.returncode == 0 and "rolled back to 1:90,2:10" in rolled.stdout
    shown = cli(server.home, "models", "route", "adder").stdout
    assert "1:90,2:10" in shown and "in force" in shown and "rolled back" in shown
    assert ("adder", "ok") in audited(server, "model.route")
