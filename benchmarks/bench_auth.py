"""Cost of access control per request: auth + rate limiting on vs off, tiny ONNX model.

Two servers on the same machine serve the same tiny model (``a + b`` on 4 floats): one with
auth off, one with ``--require-auth`` and a key that has rpm/tpm limits high enough never to
refuse (so every request is authenticated, scope-checked, rate-limited, counted). Requests
go one at a time over a keep-alive connection, alternating between the servers request by
request, so load from other processes on the machine hits both alike.
The claim: p50(on) - p50(off) <= 0.2 ms.

Also timed in-process (no HTTP): the gate's own work per request (authenticate, check_model,
record), which is what the end-to-end difference should consist of.

    .venv/bin/python benchmarks/bench_auth.py [--requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import append_section  # noqa: E402

from aimass.access.gate import Gate  # noqa: E402
from aimass.config import Settings  # noqa: E402
from aimass.registry import keys  # noqa: E402
from tests.conftest import make_add_model, onnx_spec, run_server  # noqa: E402

BODY = {
    "inputs": [
        {"name": "a", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
        {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
    ]
}
LIMITS = {"rpm": 10_000_000, "tpm": 10_000_000}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def one(client: httpx.Client, url: str, headers: dict) -> float:
    start = time.perf_counter()
    r = client.post(url, json=BODY, headers=headers)
    took = (time.perf_counter() - start) * 1000
    if r.status_code != 200:
        raise RuntimeError(f"{r.status_code}: {r.text}")
    return took


def end_to_end(tmp: Path, total: int) -> dict[str, list[float]]:
    """Requests alternate one by one between the setups (which goes first alternates too), so
    machine load hits all alike."""
    model = onnx_spec("add", make_add_model(tmp / "add.onnx"), batching={"max_batch_size": 1})
    with ExitStack() as stack:
        on_tmp = tmp / "on"
        (on_tmp / "home").mkdir(parents=True)
        _, key = keys.create_key(f"sqlite:///{on_tmp / 'home' / 'aimass.db'}", "bench", **LIMITS)
        off = stack.enter_context(run_server(tmp / "off", [model]))
        on = stack.enter_context(run_server(on_tmp, [model], extra_args=["--require-auth"]))
        auth = {"Authorization": f"Bearer {key}"}
        setups = {
            "auth off, no key": (off, {}),
            "auth on (--require-auth), key with rpm/tpm": (on, auth),
        }
        clients = {name: stack.enter_context(httpx.Client(timeout=30)) for name in setups}
        times: dict[str, list[float]] = {name: [] for name in setups}
        order = list(setups.items())
        for i in range(total + 200):
            for name, (base, headers) in order if i % 2 else order[::-1]:
                took = one(clients[name], f"{base}/v2/models/add/infer", headers)
                if i >= 200:  # the first 200 rounds warm up
                    times[name].append(took)
        return times


def in_process(tmp: Path, n: int) -> float:
    """Microseconds per request of the gate's own work."""
    settings = Settings(home=tmp / "gate", require_auth=True)
    _, key = keys.create_key(settings.resolved_database_url, "bench", **LIMITS)
    gate = Gate(settings)
    headers = [(b"authorization", f"Bearer {key}".encode())]

    async def run() -> float:
        await gate.sync()
        start = time.perf_counter()
        for _ in range(n):
            caller = await gate.authenticate(headers, "127.0.0.1")
            await gate.authorize(caller, "add", 0)
            gate.record(caller, "add", 0, 0, False)
        return (time.perf_counter() - start) / n * 1e6

    return asyncio.run(run())


def report(times: dict[str, list[float]], gate_us: float, args) -> str:
    cmd = ".venv/bin/python benchmarks/bench_auth.py"
    cmd += f" --requests {args.requests}"
    lines = [
        "",
        f"## Access control overhead ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"`{cmd}` — {platform.machine()}, {args.requests} sequential v2 infer requests per side "
        "(tiny ONNX add model, keep-alive, the two servers alternating request by request).",
        "",
        "| setup | p50 ms | p90 ms | p99 ms | mean ms |",
        "|---|---|---|---|---|",
    ]
    for name, values in times.items():
        lines.append(
            f"| {name} | {percentile(values, 0.5):.3f} | {percentile(values, 0.9):.3f} | "
            f"{percentile(values, 0.99):.3f} | {statistics.fmean(values):.3f} |"
        )
    off, on = (percentile(v, 0.5) for v in times.values())
    verdict = "meets" if on - off <= 0.2 else "MISSES"
    lines += [
        "",
        f"p50 difference: {on - off:+.3f} ms ({verdict} the ≤ 0.2 ms target). "
        f"Gate work in-process (authenticate + scope + rate limit + usage count): "
        f"{gate_us:.1f} µs per request.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--no-append", action="store_true", help="Print only.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        times = end_to_end(Path(tmp), args.requests)
        gate_us = in_process(Path(tmp), 20_000)
    text = report(times, gate_us, args)
    print(text)
    if not args.no_append:
        append_section(text)


if __name__ == "__main__":
    main()
