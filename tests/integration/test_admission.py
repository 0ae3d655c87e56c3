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


async def wait_metric(server, name, value, timeout=10):
    end = time.monotonic() + timeout
    while await metric(server, name) != value:
        assert time.monotonic() < end, f"{name} did not reach {value}"
        await asyncio.sleep(0.02)


async def wait_depth(server, n, timeout=10):
    await wait_metric(server, "aimass_queue_depth", n, timeout)


async def start_running(server, client) -> asyncio.Task:
    """Send one request and return once its batch is on the replica (the queue is empty)."""
    batches = await metric(server, "aimass_batch_size_count")
    running = asyncio.create_task(client.post("/v2/models/slow/infer", json=BODY))
    await wait_metric(server, "aimass_batch_size_count", batches + 1)
    return running


async def test_full_queue_answers_429_at_once(server):
    async with httpx.AsyncClient(base_url=server, timeout=60) as c:
        url = "/v2/models/slow/infer"
        running = await start_running(server, c)
        queued = [asyncio.create_task(c.post(url, json=BODY)) for _ in range(2)]
        await wait_depth(server, 2)
        started = time.monotonic()
        r = await c.post(url, json=BODY)
        elapsed = time.monotonic() - started
        assert r.status_code == 429, r.text
        assert "2 requests are waiting and limits.max_queue is 2" in r.json()["error"]
        assert int(r.headers["retry-after"]) >= 1
        assert elapsed < 0.5
        done = await asyncio.gather(running, *queued)
        assert [d.status_code for d in done] == [200, 200, 200]


async def test_deadline_passed_in_queue_gives_504(server):
    async with httpx.AsyncClient(base_url=server, timeout=60) as c:
        url = "/v2/models/slow/infer"
        running = await start_running(server, c)
        timeout_param = {**BODY, "parameters": {"timeout": 50_000}}  # microseconds
        by_header, by_param = await asyncio.gather(
            c.post(url, json=BODY, headers={"Request-Timeout": "0.05"}),
            c.post(url, json=timeout_param),
        )
        assert not running.done(), "both deadlines must pass while the replica is busy"
        for r in (by_header, by_param):
            assert r.status_code == 504, r.text
            assert "deadline" in r.json()["error"]
        assert (await running).status_code == 200


async def test_disconnected_clients_have_their_queued_work_removed(server):
    """Two clients queue behind a running batch, then hang up; their work must never run.

    The clients leave as soon as their requests are seen queued (not after a fixed timeout),
    so the test holds on a machine of any speed while the running batch lasts a few dozen ms.
    """
    batches_before = await metric(server, "aimass_batch_size_count")
    url = "/v2/models/slow/infer"
    async with httpx.AsyncClient(base_url=server, timeout=60) as c:
        running = await start_running(server, c)
        impatient = [httpx.AsyncClient(base_url=server, timeout=60) for _ in range(2)]
        gone = [asyncio.create_task(client.post(url, json=BODY)) for client in impatient]
        await wait_depth(server, 2)
        assert not running.done(), "the running batch must outlast the queued clients"
        for task in gone:
            task.cancel()
        await asyncio.gather(*gone, return_exceptions=True)
        for client in impatient:
            await client.aclose()
        await wait_depth(server, 0, timeout=2)
        assert not running.done(), "the queue emptied because the clients left, not by serving"
        assert (await running).status_code == 200
    await asyncio.sleep(0.3)
    count = await metric(server, "aimass_batch_size_count")
    assert count == batches_before + 1, "abandoned requests must never run"
