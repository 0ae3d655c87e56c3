"""Shared fixtures: a real server in a subprocess, and tiny ONNX models built with onnx.helper."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import yaml
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server(str):
    """The base URL of a running test server (a str), with its process, home and log."""

    proc: subprocess.Popen
    home: Path
    log_path: Path
    port: int

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _spec_dict(model: Any) -> dict:
    if isinstance(model, dict):
        return model
    return model.model_dump(mode="json")


@contextmanager
def run_server(
    tmp_path: Path,
    models: list[Any] = (),
    extra_args: list[str] = (),
    env: dict[str, str] | None = None,
    wait: str = "ready",
    timeout_s: float = 180,
    port_from_env: bool = False,
    cwd: Path = ROOT,
    prefix: list[str] = (),
    host: str = "127.0.0.1",
) -> Iterator[Server]:
    """Start ``aimass serve`` on a free loopback port; stop it (gracefully) afterwards.

    ``port_from_env`` passes the port as ``AIMASS_PORT`` instead of ``--port``; ``cwd`` is the
    folder it runs in, whose ``aimass`` package ``-m`` imports (another checkout's, to compare).
    ``prefix`` goes before the command and ``host`` is the address it binds (``ip netns exec NS``
    and the namespace's address: a server on another host, as the network sees it)."""
    home = tmp_path / "home"
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    port_args = [] if port_from_env else ["--port", str(port)]
    host_args = [] if host == "127.0.0.1" else ["--host", host]
    cmd = [
        *prefix,
        sys.executable,
        "-m",
        "aimass",
        "serve",
        *port_args,
        "--no-builtins",
        "--log-level",
        "warning",
        *host_args,
        *extra_args,
    ]
    if models:
        config = tmp_path / f"models-{port}.yaml"
        config.write_text(yaml.safe_dump({"models": [_spec_dict(m) for m in models]}))
        cmd += ["--config", str(config)]
    full_env = {
        **os.environ,
        "AIMASS_HOME": str(home),
        "AIMASS_RECONCILE_INTERVAL_S": "0.5",
        **({"AIMASS_PORT": str(port)} if port_from_env else {}),
        **(env or {}),
    }
    log_path = tmp_path / f"server-{port}.log"
    log_file = log_path.open("w")
    proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=full_env, cwd=cwd)
    server = Server(f"http://{host}:{port}")
    server.proc, server.home, server.log_path, server.port = proc, home, log_path, port
    try:
        _wait_until_up(server, wait, timeout_s)
        yield server
    finally:
        stop_server(proc)
        log_file.close()


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_until_up(server: Server, wait: str, timeout_s: float) -> None:
    path = "/v2/health/ready" if wait == "ready" else "/v2/health/live"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited with {server.proc.returncode}:\n{server.log()}")
        try:
            if httpx.get(server + path, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server not {wait} after {timeout_s}s:\n{server.log()}")


# ---- tiny ONNX models -------------------------------------------------------------------


def _save(graph, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def make_add_model(path: Path, width: int = 4) -> Path:
    """a, b: FP32 [-1, width] -> sum = a + b, diff = a - b."""
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", width])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, ["batch", width])
    s = helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["batch", width])
    d = helper.make_tensor_value_info("diff", TensorProto.FLOAT, ["batch", width])
    nodes = [
        helper.make_node("Add", ["a", "b"], ["sum"]),
        helper.make_node("Sub", ["a", "b"], ["diff"]),
    ]
    return _save(helper.make_graph(nodes, "add", [a, b], [s, d]), path)


def make_identity_text_model(path: Path) -> Path:
    """text: BYTES [-1] -> echo: BYTES [-1]."""
    x = helper.make_tensor_value_info("text", TensorProto.STRING, ["batch"])
    y = helper.make_tensor_value_info("echo", TensorProto.STRING, ["batch"])
    return _save(
        helper.make_graph([helper.make_node("Identity", ["text"], ["echo"])], "echo", [x], [y]),
        path,
    )


def make_mlp_model(path: Path, width: int = 2048, layers: int = 2, seed: int = 0) -> Path:
    """x: FP32 [-1, width] -> y: FP32 [-1, width]; compute-bound MatMul + Relu layers."""
    rng = np.random.default_rng(seed)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])
    inits, nodes, prev = [], [], "x"
    for i in range(layers):
        w = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        out = "y" if i == layers - 1 else f"h{i}"
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]))
        nodes.append(helper.make_node("Relu", [f"m{i}"], [out]))
        prev = out
    return _save(helper.make_graph(nodes, "mlp", [x], [y], initializer=inits), path)


def make_slow_model(path: Path, depth: int = 4, rows: int = 256) -> Path:
    """x: FP32 [-1, 1] -> y: FP32 [-1, 1]; every row costs ``depth`` 256x512x512 MatMuls.

    The cost per row comes from an internal Expand, so tests send tiny requests that keep
    a replica busy for a predictable while.
    """
    rng = np.random.default_rng(0)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])
    w_in = numpy_helper.from_array(np.ones((1, 512), np.float32), "w_in")
    shape = numpy_helper.from_array(np.array([1, rows, 1], np.int64), "shape")
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    inits = [w_in, shape, axes]
    nodes = [
        helper.make_node("MatMul", ["x", "w_in"], ["h"]),
        helper.make_node("Unsqueeze", ["h", "axes"], ["h3"]),
        helper.make_node("Expand", ["h3", "shape"], ["e0"]),
    ]
    prev = "e0"
    for i in range(depth):
        w = (rng.standard_normal((512, 512)) / np.sqrt(512)).astype(np.float32)  # no denormals
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"e{i + 1}"]))
        prev = f"e{i + 1}"
    nodes.append(helper.make_node("ReduceMean", [prev], ["r"], axes=[1, 2], keepdims=0))
    nodes.append(helper.make_node("Unsqueeze", ["r", "axes"], ["y"]))
    return _save(helper.make_graph(nodes, "slow", [x], [y], initializer=inits), path)


def onnx_spec(name: str, path: Path, **overrides: Any) -> dict:
    spec = {"name": name, "runtime": "onnx", "source": str(path)}
    spec.update(overrides)
    return spec
