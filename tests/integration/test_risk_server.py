"""/v1/risk on a real server through httpx: train from an uploaded file (a job), evaluation
beside the rules-only baseline and promotion, scoring with the server's features equal to the
training replay, rules edited without retraining, alerts listed, streamed (SSE, resumed with
Last-Event-ID) and acknowledged; a bad file fails its job naming the row and column."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from aimass.scenarios.risk.features import FeatureConfig, replay
from tests.conftest import run_server
from tests.factories_risk import transactions

PARAMS = {"entities": ["card", "device"], "numeric": ["merchant_risk"], "n_estimators": 60}


def _csv(rows: list[dict]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def _upload(c: httpx.Client, data: bytes) -> str:
    r = c.post("/v1/files", files={"file": ("tx.csv", data)}, data={"purpose": "user_data"})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def _job(c: httpx.Client, body: dict, timeout_s: float = 120) -> dict:
    r = c.post("/v1/risk/models", json=body)
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = c.get(f"/v1/jobs/{r.json()['id']}").json()
        if job["status"] in ("completed", "failed", "cancelled"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job did not finish: {job}")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("risk")
    rows = transactions(3600, seed=2)
    train, live = rows[:3000], rows[3000:]
    with run_server(tmp) as srv, httpx.Client(base_url=str(srv), timeout=60) as c:
        job = _job(c, {"name": "fraud", "training_file": _upload(c, _csv(train)),
                       "hyperparameters": PARAMS})  # fmt: skip
        deadline = time.monotonic() + 60
        while c.get("/v2/models/fraud/ready").status_code != 200:
            assert time.monotonic() < deadline, "the trained model did not load"
            time.sleep(0.3)
        yield {"c": c, "job": job, "train": train, "live": live, "url": str(srv)}


def test_training_is_evaluated_against_the_baseline_and_promoted(env):
    job = env["job"]
    assert job["status"] == "completed", job
    result = job["result"]
    assert result["metrics"]["auc_pr"] > result["baseline"]["auc_pr"]
    assert result["promotion"]["promoted"] is True
    assert result["thresholds"]["review"] <= result["thresholds"]["block"]


def test_scores_use_the_training_features_and_alerts_stream(env):
    c, train, live = env["c"], env["train"], env["live"]
    config = FeatureConfig(entities=("card", "device"), numeric=("merchant_risk",))
    expected, _, _ = replay(config, train + live)
    names = config.names
    answers = []
    for i, event in enumerate(live):
        r = c.post("/v1/risk/score", json={"model": "fraud", "event": event})
        assert r.status_code == 200, r.text
        answer = r.json()
        answers.append(answer)
        for top in answer["top_features"]:
            want = expected[len(train) + i][names.index(top["name"])]
            assert top["value"] == pytest.approx(float(want), rel=1e-6)
    decisions = [a["decision"] for a in answers]
    labels = [int(e["label"]) for e in live]
    flagged = [d != "allow" for d in decisions]
    caught = sum(f and y for f, y in zip(flagged, labels, strict=True))
    assert caught >= 0.5 * sum(labels) and sum(flagged) < 0.2 * len(live)
    alerts = c.get("/v1/risk/alerts", params={"model": "fraud", "limit": 100}).json()["data"]
    assert {a["id"] for a in alerts} <= {a["alert_id"] for a in answers if a["alert_id"]}
    first = min(a["alert_id"] for a in answers if a["alert_id"])
    with c.stream("GET", "/v1/risk/alerts/stream", headers={"Last-Event-ID": str(first)}) as s:
        lines = s.iter_lines()
        got = next(line for line in lines if line.startswith("id: "))
    later = sorted(a["alert_id"] for a in answers if a["alert_id"] and a["alert_id"] > first)
    assert got == f"id: {later[0]}"
    acked = c.post(f"/v1/risk/alerts/{first}/ack").json()
    assert acked["acked_at"] is not None
    assert first not in {a["id"] for a in c.get("/v1/risk/alerts?acked=false").json()["data"]}


def test_rules_change_decisions_without_retraining(env):
    c = env["c"]
    event = dict(env["live"][0], timestamp=env["live"][-1]["timestamp"] + 10, amount=1.0)
    assert c.get("/v1/risk/models/fraud/rules").json()["revision"] == 0
    rules = [{"name": "tiny_and_new_device", "when": "amount < 2 and device == 'zz'",
              "action": "block"}]  # fmt: skip
    r = c.put("/v1/risk/models/fraud/rules", json={"rules": rules})
    assert r.status_code == 200 and r.json()["revision"] == 1
    answer = c.post("/v1/risk/score", json={"model": "fraud", "event": {**event, "device": "zz"}})
    assert answer.json()["decision"] == "block"
    assert answer.json()["rules"] == ["tiny_and_new_device"]
    evil = [{"name": "x", "when": "__import__('os')", "action": "block"}]
    bad = c.put("/v1/risk/models/fraud/rules", json={"rules": evil})
    assert bad.status_code == 400 and "rules[0]" in bad.text
    assert c.get("/v1/risk/models/fraud/rules").json()["revision"] == 1


def _cli(env, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "aimass", "risk", *args, "--url", env["url"]]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_a_bad_training_file_fails_its_job_naming_row_and_column(env, tmp_path):
    c = env["c"]
    rows = env["train"][:200]
    rows[41] = dict(rows[41], amount="n/a")
    (tmp_path / "bad.csv").write_bytes(_csv(rows))
    run = _cli(env, "train", "fraud-bad", str(tmp_path / "bad.csv"), "-p", 'entities=["card"]')
    assert run.returncode == 1
    job = json.loads(run.stdout)
    assert job["status"] == "failed"
    assert "row 42: column 'amount' must be a number" in json.dumps(job["error"])
    missing = c.post("/v1/risk/score", json={"model": "fraud", "event": {"card": "c1"}})
    assert missing.status_code == 400 and "timestamp" in missing.text


class Receiver(BaseHTTPRequestHandler):
    """A webhook endpoint on 127.0.0.1 that fails its first ``failures`` deliveries."""

    failures = 2
    got: list[tuple[int, dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        status = 500 if len(self.got) < self.failures else 200
        self.got.append((status, dict(self.headers.items()), body))
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_alerts_reach_a_webhook_signed_after_retries(env):
    c = env["c"]
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{receiver.server_port}/hook"
        made = c.post("/v1/risk/webhooks", json={"url": url, "model": "fraud"}).json()
        secret = made["secret"]
        assert secret.startswith("whsec_")
        listed = c.get("/v1/risk/webhooks").json()["data"]
        assert [h["id"] for h in listed] == [made["id"]] and listed[0]["secret"] is None
        event = dict(env["live"][1], timestamp=env["live"][-1]["timestamp"] + 20, amount=1.5)
        c.put("/v1/risk/models/fraud/rules", json={"rules": [
            {"name": "tiny_and_new_device", "when": "amount < 2 and device == 'zz'",
             "action": "block"}]})  # fmt: skip
        answer = c.post(
            "/v1/risk/score", json={"model": "fraud", "event": {**event, "device": "zz"}}
        )
        alert_id = answer.json()["alert_id"]
        deadline = time.monotonic() + 20
        while not any(status == 200 for status, _, _ in Receiver.got):
            assert time.monotonic() < deadline, Receiver.got
            time.sleep(0.2)
        assert [status for status, _, _ in Receiver.got] == [500, 500, 200]
        _, headers, body = Receiver.got[-1]
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert headers["x-aimass-signature"] == expected
        assert json.loads(body)["id"] == alert_id
        assert len({h["x-aimass-delivery"] for _, h, _ in Receiver.got}) == 1
        deliveries = c.get("/v1/risk/webhooks").json()["data"][0]["deliveries"]
        assert deliveries == {"delivered": 1}
        assert c.delete(f"/v1/risk/webhooks/{made['id']}").status_code == 200
        assert c.delete(f"/v1/risk/webhooks/{made['id']}").status_code == 404
    finally:
        receiver.shutdown()


def test_the_command_line_scores_lists_and_acknowledges(env):
    event = dict(env["live"][2], timestamp=env["live"][-1]["timestamp"] + 30, amount=1.2)
    run = _cli(env, "score", "fraud", json.dumps({**event, "device": "zz"}))
    assert run.returncode == 0, run.stderr
    alert_id = json.loads(run.stdout)["alert_id"]
    listed = _cli(env, "alerts", "--model", "fraud", "--unacked", "--json")
    assert alert_id in [json.loads(line)["id"] for line in listed.stdout.splitlines()]
    assert _cli(env, "ack", str(alert_id)).returncode == 0
    listed = _cli(env, "alerts", "--model", "fraud", "--unacked", "--json")
    assert alert_id not in [json.loads(line)["id"] for line in listed.stdout.splitlines()]
