"""Two Ray nodes on two hosts, as the network sees them: ``ray start`` in two network namespaces.

The test makes namespaces A and B joined by a veth pair (10.213.0.1 and 10.213.0.2), starts the
Ray head in A and a worker node in B with ``ray start``, and runs the server in A as the
cluster's driver. A third veth pair joins this (root) namespace to A, so the test's clients reach
the server over a network link; no namespace gets a route to any other network. Every process
a namespace holds is ended and both namespaces are deleted afterwards, whatever happened.

``ray stop`` is not used to clean up: it finds Ray's processes by name on the whole machine, so
it would also end other Ray clusters running here. ``ip netns pids`` names exactly ours.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import openai
import pytest
import tritonclient.http as triton

from tests.conftest import ROOT, make_slow_model, onnx_spec, run_server
from tests.factories_text import SENTENCES, tiny_encoder
from tests.integration.test_cluster_ray import (  # skips without Ray
    _infer_slow,
    _kill_under_load,
    _metadata,
    _within,
    check_failover,
)

HEAD_IP, WORKER_IP = "10.213.0.1", "10.213.0.2"
GCS_PORT = 6379
"""Any port will do: nothing else listens in a namespace made for the test."""
QUARTER_CPU = {"num_cpus": 0.25}
"""Every replica fits the head's one CPU once the worker node is gone."""
RAY = Path(sys.executable).parent / "ray"
STARTED = "Ray runtime started."


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class Hosts:
    """The two namespaces, the address the test reaches A at, and what the test started there."""

    a: str
    b: str
    a_from_root: str
    temp: Path
    started: list[subprocess.Popen]

    @staticmethod
    def inside(ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]


def _pids(ns: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _free_subnet() -> int:
    """A third octet for the root link whose 10.213.N.0/24 this namespace does not route yet."""
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    for n in range(1 + os.getpid() % 200, 255):
        if f"10.213.{n}." not in routes:
            return n
    pytest.skip("no free 10.213.N.0/24 for the link to the test's namespace")


@contextmanager
def _namespaces() -> Iterator[Hosts]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (ip netns add)")
    if shutil.which("ip") is None:
        pytest.skip("no `ip` command (iproute2) to make network namespaces")
    run = uuid.uuid4().hex[:6]
    a, b = f"aimass-{run}-a", f"aimass-{run}-b"
    made: list[str] = []
    started: list[subprocess.Popen] = []
    temp = Path(tempfile.mkdtemp(prefix="aimray-"))  # short: Ray's socket paths must fit
    try:
        try:
            n = _make_links(run, a, b, made)
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"cannot make network namespaces and veth links: {exc.cmd}: {exc.stderr}")
        yield Hosts(a, b, f"10.213.{n}.2", temp, started)
    finally:
        for ns in made:
            _end_everything_in(ns)
        for proc in started:
            proc.wait(timeout=10)
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for end in (f"am{run}a", f"am{run}h"):  # gone with the namespaces, unless never moved
            subprocess.run(["ip", "link", "del", end], capture_output=True)
        shutil.rmtree(temp, ignore_errors=True)


def _make_links(run: str, a: str, b: str, made: list[str]) -> int:
    """A and B (appended to ``made``) joined by a veth pair, and A to this namespace by another
    on 10.213.N.0/24; returns N."""
    for ns in (a, b):
        _ip("netns", "add", ns)
        made.append(ns)
        _ip("-n", ns, "link", "set", "lo", "up")
    n = _free_subnet()
    links = (
        (f"am{run}a", a, f"{HEAD_IP}/24", f"am{run}b", b, f"{WORKER_IP}/24"),
        (f"am{run}r", a, f"10.213.{n}.2/24", f"am{run}h", None, f"10.213.{n}.1/24"),
    )
    for end1, ns1, ip1, end2, ns2, ip2 in links:
        _ip("link", "add", end1, "type", "veth", "peer", "name", end2)
        for end, ns, addr in ((end1, ns1, ip1), (end2, ns2, ip2)):
            where = ["-n", ns] if ns else []
            if ns:
                _ip("link", "set", end, "netns", ns)
            _ip(*where, "addr", "add", addr, "dev", end)
            _ip(*where, "link", "set", end, "up")
    return n


def _end_everything_in(ns: str) -> None:
    """SIGKILL every process in the namespace until none is left (they are all this test's)."""
    deadline = time.monotonic() + 15
    while (pids := _pids(ns)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)


def _ray_start(hosts: Hosts, ns: str, name: str, args: list[str]) -> None:
    """``ray start --block`` in a namespace; returns once the node runs."""
    log = hosts.temp / f"{name}.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [*hosts.inside(ns), str(RAY), "start", "--block", "--num-cpus=1", *args]
    cmd += ["--temp-dir", str(hosts.temp / name), "--disable-usage-stats"]
    cmd += ["--object-store-memory", str(100 * 2**20)]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    hosts.started.append(proc)
    deadline = time.monotonic() + 60
    while STARTED not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.skip(f"Ray cannot start a node in {ns}:\n{log.read_text(errors='replace')}")
        time.sleep(0.2)


def _node_ids(hosts: Hosts) -> dict[str, str]:
    """Each live node's id and IP, as the cluster itself reports them (asked from A)."""
    script = (
        "import json, ray\n"
        f"ray.init(address='{HEAD_IP}:{GCS_PORT}', log_to_driver=False)\n"
        "print(json.dumps({n['NodeID']: n['NodeManagerAddress'] for n in ray.nodes() "
        "if n['Alive']}))"
    )
    cmd = [*hosts.inside(hosts.a), sys.executable, "-c", script]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    return json.loads(out.splitlines()[-1])


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Hosts, dict[str, str]]]:
    with _namespaces() as hosts:
        _ray_start(
            hosts,
            hosts.a,
            "head",
            [
                "--head",
                f"--node-ip-address={HEAD_IP}",
                f"--port={GCS_PORT}",
                "--include-dashboard=false",
            ],
        )
        _ray_start(
            hosts,
            hosts.b,
            "worker",
            [f"--address={HEAD_IP}:{GCS_PORT}", f"--node-ip-address={WORKER_IP}"],
        )
        nodes = _node_ids(hosts)
        assert sorted(nodes.values()) == [HEAD_IP, WORKER_IP], nodes
        yield hosts, nodes


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("netns-models")
    return {
        "slow": make_slow_model(root / "slow.onnx", depth=2),
        "encoder": tiny_encoder(root / "encoder", max_length=16),
    }


@pytest.fixture(scope="module")
def server(cluster, models, tmp_path_factory):
    hosts, _ = cluster
    specs = [
        onnx_spec("slow", models["slow"], replicas=2, resources=QUARTER_CPU),
        {
            "name": "tiny",
            "task": "embedding",
            "runtime": "transformers",
            "source": str(models["encoder"]),
            "resources": QUARTER_CPU,
        },
    ]
    # --insecure: the server binds the link to the test's namespace, not loopback
    args = ["--cluster", f"{HEAD_IP}:{GCS_PORT}", "--insecure"]
    tmp = tmp_path_factory.mktemp("netns-server")
    prefix, host = hosts.inside(hosts.a), hosts.a_from_root
    with run_server(tmp, specs, extra_args=args, prefix=prefix, host=host) as srv:
        yield srv


def test_the_two_replicas_run_on_the_two_hosts(server, cluster):
    _, nodes = cluster
    meta = _metadata(server, "slow")
    assert meta["replicas"] == 2, meta
    assert sorted(nodes[n] for n in meta["nodes"]) == [HEAD_IP, WORKER_IP], (meta, nodes)


def test_v2_and_openai_answers_cross_the_link(server, models):
    client = triton.InferenceServerClient(url=server.removeprefix("http://"), concurrency=4)
    x = np.array([[0.5]], dtype=np.float32)
    expected = ort.InferenceSession(str(models["slow"])).run(None, {"x": x})[0]
    inputs = [triton.InferInput("x", [1, 1], "FP32")]
    inputs[0].set_data_from_numpy(x)
    for result in [client.async_infer("slow", inputs) for _ in range(8)]:
        np.testing.assert_allclose(result.get_result().as_numpy("y"), expected, rtol=1e-6)
    client.close()
    oai = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)
    vectors = [d.embedding for d in oai.embeddings.create(model="tiny", input=SENTENCES).data]
    assert len(vectors) == len(SENTENCES)
    norms = np.linalg.norm(np.array(vectors, dtype=np.float32), axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-4)  # the encoder's Normalize layer


def test_killing_the_worker_hosts_raylet_under_load(server, cluster):
    hosts, nodes = cluster
    head = next(n for n, ip in nodes.items() if ip == HEAD_IP)
    raylet = next(
        p for p in _pids(hosts.b) if Path(f"/proc/{p}/comm").read_text().strip() == "raylet"
    )
    restarts = _metadata(server, "slow")["restarts"]
    answers, killed = _kill_under_load(server, lambda: os.kill(raylet, signal.SIGKILL))
    check_failover(answers)

    def restored() -> bool:
        meta = _metadata(server, "slow")
        return meta["replicas"] == 2 and meta["restarts"] > restarts and meta["nodes"] == [head]

    assert _within(30 - (time.monotonic() - killed), restored), _metadata(server, "slow")
    print(
        f"restored {time.monotonic() - killed:.1f} s after the kill; "
        f"{sum(a.status == 503 for a in answers)} of {len(answers)} answers were 503"
    )
    assert _infer_slow(server, 1.0).status_code == 200
