"""Helpers of the batch tests: input files, submitting with the official SDK, polling, reading
the output files, and the tiny models the batches run on.

Imported by the batch test modules (not a pytest conftest: it only provides helpers).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import openai

from tests.conftest import make_slow_model, onnx_spec
from tests.factories_text import tiny_encoder

ENV = {"AIMASS_AUTH_FAILURE_DELAY_S": "0", "AIMASS_JOBS_POLL_INTERVAL_S": "0.2"}
SLOW_BODY = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]}


def encoder_spec(tmp: Path) -> dict:
    return {
        "name": "tiny",
        "task": "embedding",
        "runtime": "transformers",
        "source": str(tiny_encoder(tmp / "encoder", max_length=64)),
        "batching": {"max_batch_size": 16, "max_batch_tokens": 2048},
    }


def slow_spec(tmp: Path, rows: int = 512) -> dict:
    slow = make_slow_model(tmp / "slow.onnx", depth=2, rows=rows)
    return onnx_spec("slow", slow, batching={"max_batch_size": 2}, limits={"max_queue": 64})


def client(env, who: str = "alice") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{env['base']}/v1", api_key=env[who], max_retries=0)


def jsonl(lines: list[dict]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def requests(url: str, bodies: list[dict]) -> list[dict]:
    return [
        {"custom_id": f"req-{i}", "method": "POST", "url": url, "body": body}
        for i, body in enumerate(bodies)
    ]


def submit(c: openai.OpenAI, endpoint: str, lines: list[dict]):
    made = c.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
    return c.batches.create(input_file_id=made.id, endpoint=endpoint, completion_window="24h")


def wait(c: openai.OpenAI, batch_id: str, until=None, timeout_s: float = 120):
    done = until or (lambda b: b.status in ("completed", "failed", "expired", "cancelled"))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        batch = c.batches.retrieve(batch_id)
        if done(batch):
            return batch
        time.sleep(0.1)
    raise AssertionError(f"{batch_id} is still {batch.status} after {timeout_s} s")


def read_lines(c: openai.OpenAI, file_id: str | None) -> list[dict]:
    if file_id is None:
        return []
    return [json.loads(x) for x in c.files.content(file_id).content.splitlines()]
