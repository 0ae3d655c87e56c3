"""Bounded queues, deadlines and disconnected clients, against a real server."""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import pytest

from tests.conftest import make_slow_model, onnx_spec, run_server

BODY = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("admission")
    slow = make_slow_model(tmp / "slow.onnx", depth=32, rows=4096)
    spec = onnx_spec("slow", slow, batching={"max_batch_size": 1}, limits={"max_queue": 2})
    with run_server(tmp, [spec]) as srv:
        yield srv


async def metric(server, name):
    async with httpx.AsyncClient() as c:
        text = (await c.get(f"{server}/metrics")).text
    m = re.search(rf'^{name}\{{model="slow",version="1"\}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


async def wait_depth(server, n, timeout=10):
    end = time.monotonic() + timeout
    while await metric(server, "aimass_queue_depth") != n:
        assert time.monotonic() < end, "queue depth not reached"
        await asyncio.sleep(0.02)


async def test_full_queue_answers_429_at_once(server):
    async with httpx.AsyncClient(base_url=server, timeout=60) as c:
        url = "/v2/models/slow/infer"
        running = asyncio.create_task(c.post(url, json=BODY))
        await asyncio.sleep(0.1)
        queued = [asyncio.create_task(c.post(url, json=BODY)) for _ in range(2)]
        await wait_depth(server, 2)
        started = time.monotonic()
        r = await c.post(url, json=BODY)
        elapsed = time.monotonic() - started
        assert r.status_code == 429, r.text
        assert "max_queue" in r.json()["error"]
        assert int(r.headers["retry-after"]) >= 1
        assert elapsed < 0.5
        done = await asyncio.gather(running, *queued)
        assert [d.status_code for d in done] == [200, 200, 200]


async def test_deadline_passed_in_queue_gives_504(server):
    async with httpx.AsyncClient(base_url=server, timeout=60) as c:
        url = "/v2/models/slow/infer"
        running = asyncio.create_task(c.post(url, json=BODY))
        await asyncio.sleep(0.1)
        r = await c.post(url, json=BODY, headers={"Request-Timeout": "0.05"})
        assert r.status_code == 504, r.text
        assert "deadline" in r.json()["error"]
        timeout_param = {**BODY, "parameters": {"timeout": 50_000}}
        r = await c.post(url, json=timeout_param)
        assert r.status_code == 504
        assert (await running).status_code == 200


async def test_disconnected_clients_have_their_queued_work_removed(server):
    batches_before = await metric(server, "aimass_batch_size_count")
    async with httpx.AsyncClient(base_url=server, timeout=60) as c:
        running = asyncio.create_task(c.post("/v2/models/slow/infer", json=BODY))
        await asyncio.sleep(0.1)
        async with httpx.AsyncClient(base_url=server, timeout=0.3) as impatient:
            gone = [impatient.post("/v2/models/slow/infer", json=BODY) for _ in range(2)]
            results = await asyncio.gather(*gone, return_exceptions=True)
        assert all(isinstance(r, httpx.TimeoutException) for r in results)
        await wait_depth(server, 0, timeout=2)
        assert (await running).status_code == 200
    await asyncio.sleep(0.3)
    count = await metric(server, "aimass_batch_size_count")
    assert count == batches_before + 1, "abandoned requests must never run"
