"""Crash isolation: a killed replica fails its requests fast, restarts, and harms no one else."""

from __future__ import annotations

import os
import re
import signal
import threading
import time

import httpx
import pytest

from tests.conftest import make_add_model, make_slow_model, onnx_spec, run_server

SLOW_BODY = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]}
ADD_BODY = {
    "inputs": [
        {"name": "a", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
        {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
    ]
}


def pids(server, name):
    return httpx.get(f"{server}/v2/models/{name}").json()["parameters"]["pids"]


def metric(server, name, model):
    text = httpx.get(f"{server}/metrics").text
    found = re.search(rf'^{name}\{{model="{model}",version="1"\}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def wait_for(predicate, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def new_pid(server, name, old):
    def check():
        try:
            current = pids(server, name)
        except (httpx.HTTPError, KeyError):
            return None
        return current[0] if current and current[0] != old else None

    return wait_for(check)


@pytest.fixture()
def models(tmp_path):
    slow = make_slow_model(tmp_path / "slow.onnx", depth=2, rows=1024)
    add = make_add_model(tmp_path / "add.onnx")
    return [onnx_spec("slow", slow, batching={"max_batch_size": 4}), onnx_spec("add", add)]


def test_kill_9_under_load(tmp_path, models):
    env = {"AIMASS_RESTART_BACKOFF_S": "0.2"}
    with run_server(tmp_path, models, env=env) as server:
        pid = pids(server, "slow")[0]
        stop = threading.Event()
        slow_results: list[tuple[float, int, str]] = []
        add_statuses: list[int] = []

        def load_slow():
            with httpx.Client(timeout=30) as c:
                while not stop.is_set():
                    r = c.post(f"{server}/v2/models/slow/infer", json=SLOW_BODY)
                    slow_results.append((time.monotonic(), r.status_code, r.text))

        def load_add():
            with httpx.Client(timeout=30) as c:
                while not stop.is_set():
                    add_statuses.append(
                        c.post(f"{server}/v2/models/add/infer", json=ADD_BODY).status_code
                    )

        threads = [threading.Thread(target=load_slow) for _ in range(6)]
        threads.append(threading.Thread(target=load_add))
        for t in threads:
            t.start()
        wait_for(lambda: len([r for r in slow_results if r[1] == 200]) >= 5)
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        replacement = new_pid(server, "slow", pid)
        wait_for(lambda: any(r[0] > killed_at and r[1] == 200 for r in slow_results))
        stop.set()
        for t in threads:
            t.join()
        restarts = metric(server, "aimass_replica_restarts_total", "slow")

    failures = [r for r in slow_results if r[1] != 200]
    assert failures, "requests in flight at the kill must fail"
    assert all(r[1] == 503 for r in failures), failures
    assert all("'slow'" in r[2] and "crashed" in r[2] for r in failures)
    first_failure = min(r[0] for r in failures)
    assert first_failure - killed_at < 0.1, f"503 after {first_failure - killed_at:.3f}s"
    assert replacement != pid
    assert restarts == 1
    assert add_statuses and set(add_statuses) == {200}, "the other model must not notice"


def test_repeated_crashes_mark_the_model_failed_with_its_error(tmp_path, models):
    env = {"AIMASS_RESTART_BACKOFF_S": "0.1", "AIMASS_MAX_RESTARTS": "1"}
    with run_server(tmp_path, models, env=env) as server:
        first = pids(server, "slow")[0]
        os.kill(first, signal.SIGSEGV)  # what a native crash in an engine looks like
        second = new_pid(server, "slow", first)
        os.kill(second, signal.SIGKILL)

        def failed():
            r = httpx.get(f"{server}/v2/models/slow/ready")
            return r if r.status_code != 200 and "gave up" in r.text else None

        ready = wait_for(failed)
        assert "killed by signal 9" in ready.json()["error"]
        r = httpx.post(f"{server}/v2/models/slow/infer", json=SLOW_BODY)
        assert r.status_code == 503 and "'slow' failed" in r.json()["error"]
        listed = {m["name"]: m for m in httpx.get(f"{server}/v1/admin/models").json()["data"]}
        assert listed["slow"]["state"] == "failed"
        assert "signal 9" in listed["slow"]["last_error"]
        assert httpx.get(f"{server}/v2/health/ready").status_code == 200  # strict_readiness off
        assert httpx.post(f"{server}/v2/models/add/infer", json=ADD_BODY).status_code == 200
        # Loading it again is the way back.
        r = httpx.post(f"{server}/v2/repository/models/slow/load")
        assert r.status_code == 200, r.text
        assert httpx.post(f"{server}/v2/models/slow/infer", json=SLOW_BODY).status_code == 200


def test_unload_ends_the_replica_process(tmp_path, models):
    with run_server(tmp_path, models) as server:
        pid = pids(server, "add")[0]
        r = httpx.post(f"{server}/v2/repository/models/add/unload")
        assert r.status_code == 200, r.text
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        assert httpx.post(f"{server}/v2/models/add/infer", json=ADD_BODY).status_code == 404
        assert httpx.get(f"{server}/v2/health/ready").status_code == 200
