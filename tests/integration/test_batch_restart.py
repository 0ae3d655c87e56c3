"""A batch survives its server: kill -9 mid-batch, start again on the same home, and the batch
completes with every line answered exactly once; a batch past its completion window ends
``expired`` with the answers it had.

The model is the tiny ``slow`` ONNX model (each row costs a few MatMuls), so a batch of a few
hundred lines runs long enough to be interrupted; auth is off (the anonymous caller).
"""

from __future__ import annotations

import httpx
import openai

from tests.conftest import run_server
from tests.integration.conftest_batches import ENV, read_lines, requests, slow_spec, submit, wait

LINES = 300
ENDPOINT = "/v2/models/slow/infer"


def body(x: float) -> dict:
    return {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [x]}]}


def sdk(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)


def test_kill_9_mid_batch_then_restart_answers_each_line_once(tmp_path):
    models = [slow_spec(tmp_path, rows=2048)]
    env = {**ENV, "AIMASS_JOBS_LEASE_S": "1"}
    lines = requests(ENDPOINT, [body(float(i)) for i in range(LINES)])
    with run_server(tmp_path, models, env=env) as first:
        c = sdk(first)
        batch = submit(c, ENDPOINT, lines)
        running = wait(c, batch.id, until=lambda b: b.request_counts.completed >= 20)
        assert running.status == "in_progress" and running.request_counts.completed < LINES
        first.proc.kill()
        first.proc.wait()
    with run_server(tmp_path, models, env=env) as second:
        c = sdk(second)
        done = wait(c, batch.id)
        assert done.status == "completed", done.errors
        assert done.request_counts.model_dump() == {"completed": LINES, "failed": 0, "total": LINES}
        out = read_lines(c, done.output_file_id)
        assert [line["custom_id"] for line in out] == [f"req-{i}" for i in range(LINES)]
        assert len({line["id"] for line in out}) == LINES
        online = httpx.Client()
        for i in (0, 1, LINES // 2, LINES - 1):
            expected = online.post(f"{second}{ENDPOINT}", json=body(float(i))).json()
            assert out[i]["response"]["body"]["outputs"] == expected["outputs"]
        job = online.get(f"{second}/v1/jobs/{batch.id}").json()
        assert job["attempts"] == 2 and job["status"] == "completed"
        events = online.get(f"{second}/v1/jobs/{batch.id}/events").json()["data"]
        assert "resumed (attempt 2)" in [e["message"] for e in events]
        assert not (second.home / "jobs" / batch.id).exists()


def test_a_batch_past_its_window_expires_keeping_its_answers(tmp_path):
    env = {**ENV, "AIMASS_BATCH_COMPLETION_WINDOW_S": "2"}
    with run_server(tmp_path, [slow_spec(tmp_path, rows=2048)], env=env) as server:
        c = sdk(server)
        batch = submit(c, ENDPOINT, requests(ENDPOINT, [body(1.0)] * 2000))
        assert batch.expires_at - batch.created_at == 2
        done = wait(c, batch.id, timeout_s=30)
        assert done.status == "expired" and done.expired_at
        out, errors = read_lines(c, done.output_file_id), read_lines(c, done.error_file_id)
        assert 0 < len(out) == done.request_counts.completed < 2000
        assert len(out) + len(errors) == 2000
        assert {e["error"]["code"] for e in errors} == {"batch_expired"}
