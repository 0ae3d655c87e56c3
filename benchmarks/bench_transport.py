"""One socket write per response: uvicorn's httptools protocol vs ``server/transport.py``'s.

A bare ASGI app answers a fixed 4 KB JSON (the size of one embedding as JSON numbers) under
plain uvicorn + uvloop, once with uvicorn's own ``httptools`` protocol (status line and
headers, then the body: two ``send`` calls) and once with ``GatheringHttpToolsProtocol``
(one). 64 aiohttp clients, closed loop, in this process; the two servers take turns,
``--rounds`` times, and CPU time per request is read from ``/proc`` (server) and
``time.process_time`` (client). Nothing of AI Mass runs but the protocol under test.

    .venv/bin/python benchmarks/bench_transport.py --rounds 3 --seconds 6
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np
from bench_embeddings import free_port, load_test, stop
from common import ROOT, append_section, command, cpu_seconds, machine_note, stamp, table

APP = """
import numpy as np, orjson, uvicorn
BODY = orjson.dumps({{"object": "list", "data": [{{"object": "embedding", "index": 0,
    "embedding": np.random.default_rng(0).random(384, dtype=np.float32)}}], "model": "m",
    "usage": {{"prompt_tokens": 9, "total_tokens": 9}}}}, option=orjson.OPT_SERIALIZE_NUMPY)
HEAD = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({{"type": "http.response.start", "status": 200, "headers": HEAD}})
    await send({{"type": "http.response.body", "body": BODY}})

{protocol}
uvicorn.run(app, port={port}, log_level="warning", access_log=False, http=PROTOCOL)
"""
PROTOCOLS = {
    "uvicorn httptools (two writes)": 'PROTOCOL = "httptools"',
    "GatheringHttpToolsProtocol (one write)": (
        "from aimass.server.transport import GatheringHttpToolsProtocol as PROTOCOL"
    ),
}


def start(protocol: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    code = APP.format(protocol=PROTOCOLS[protocol], port=port)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, start_new_session=True)
    time.sleep(3)
    return proc, f"http://127.0.0.1:{port}/v1/embeddings"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()

    body = lambda text: {"model": "m", "input": text}  # noqa: E731
    runs: dict[str, list[tuple[float, float, float]]] = {p: [] for p in PROTOCOLS}
    for rnd in range(args.rounds):
        order = list(PROTOCOLS) if rnd % 2 == 0 else list(PROTOCOLS)[::-1]
        for protocol in order:
            proc, url = start(protocol)
            try:
                load_test(url, body, args.clients, 1.0, 0.0)
                client, server = time.process_time(), cpu_seconds([proc.pid])
                r = load_test(url, body, args.clients, args.seconds, 0.0)
                n = r["sentences_per_s"] * r["elapsed"]
                runs[protocol].append((
                    r["sentences_per_s"],
                    (cpu_seconds([proc.pid]) - server) / n * 1000,
                    (time.process_time() - client) / n * 1000,
                ))  # fmt: skip
            finally:
                stop(proc)
            print(protocol, runs[protocol][-1], flush=True)
    rows = [[p, *(float(np.median([r[i] for r in v])) for i in range(3))] for p, v in runs.items()]
    (_, plain_rate, plain_server, _), (_, ours_rate, ours_server, _) = rows
    lines = [
        f"## Response writes: uvicorn httptools vs one write per response (bench_transport.py, "
        f"{stamp()})",
        "",
        f"A bare ASGI app answering 4 KB of JSON to {args.clients} aiohttp clients, "
        f"{args.rounds} rounds of {args.seconds:g} s per protocol, taking turns; medians. "
        f"{machine_note()}.",
        "",
        *table(["protocol", "requests/s", "server CPU ms/request", "client CPU ms/request"], rows),
        "",
        f"- One write per response: server CPU per request **{ours_server / plain_server:.2f}x**"
        f", requests/s {ours_rate / plain_rate:.2f}x.",
        "",
        "Command: `" + command("bench_transport.py", args, ["--rounds", "--seconds"]) + "`",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_append:
        append_section(text)


if __name__ == "__main__":
    main()
