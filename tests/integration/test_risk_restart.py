"""What the risk service keeps across a graceful restart of the server: each entity's feature
state (the next event's features equal the training replay's, as if the server had never
stopped), and webhook deliveries not yet made (sent once the receiver is up, after the
restart)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from aimass.scenarios.risk.features import FeatureConfig, replay
from aimass.scenarios.risk.train import check_params, train
from tests.conftest import free_port, run_server
from tests.factories_risk import transactions

CONFIG = FeatureConfig(entities=("card",))


class Receiver(BaseHTTPRequestHandler):
    got: list[bytes] = []

    def do_POST(self) -> None:
        self.got.append(self.rfile.read(int(self.headers["content-length"])))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def _score(c: httpx.Client, event: dict) -> dict:
    r = c.post("/v1/risk/score", json={"model": "fraud", "event": event})
    assert r.status_code == 200, r.text
    return r.json()


def test_feature_state_and_undelivered_alerts_survive_a_restart(tmp_path):
    rows = transactions(700, seed=4)
    history, live = rows[:500], rows[500:]
    train(history, None, check_params({"entities": ["card"], "n_estimators": 10}), tmp_path / "m")
    spec = {"name": "fraud", "runtime": "risk", "source": str(tmp_path / "m"), "trust_pickle": True}
    expected, _, _ = replay(CONFIG, rows)
    names = CONFIG.names
    port = free_port()  # nothing listens there until after the restart
    block_all = [{"name": "all", "when": "amount > 0", "action": "block"}]
    with run_server(tmp_path, [spec]) as srv, httpx.Client(base_url=str(srv), timeout=60) as c:
        for event in live[:100]:
            _score(c, event)
        c.post("/v1/risk/webhooks", json={"url": f"http://127.0.0.1:{port}/h"})
        c.put("/v1/risk/models/fraud/rules", json={"rules": block_all})
        alert_id = _score(c, live[100])["alert_id"]
    receiver = ThreadingHTTPServer(("127.0.0.1", port), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        with run_server(tmp_path, [spec]) as srv, httpx.Client(base_url=str(srv)) as c:
            for i, event in enumerate(live[101:], start=601):
                answer = _score(c, event)
                for top in answer["top_features"]:
                    want = float(expected[i][names.index(top["name"])])
                    assert top["value"] == pytest.approx(want, rel=1e-6), (i, top)
            deadline = 100
            while not Receiver.got and deadline:
                threading.Event().wait(0.2)
                deadline -= 1
            assert any(f'"id":{alert_id},'.encode() in body for body in Receiver.got)
    finally:
        receiver.shutdown()
