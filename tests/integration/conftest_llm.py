"""The built-in Gemma 3 270M GGUF for LLM tests, assembled once into pytest's cache dir.

Imported by the LLM test modules (not a pytest conftest: it only provides helpers).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from aimass.provision.builtin import gemma_spec
from aimass.spec import ModelSpec


def gemma_file(config: pytest.Config) -> Path:
    """Path of the GGUF (253 MB), written on the first run and reused afterwards."""
    home = Path(config.cache.mkdir("aimass-gemma"))
    return Path(gemma_spec(home).source)


def llm_spec(source: Path, **overrides: Any) -> ModelSpec:
    """A small serving spec for tests: 4 slots of 512 tokens, 2 threads."""
    data: dict[str, Any] = {
        "name": "gemma",
        "task": "text-generation",
        "runtime": "llamacpp",
        "source": str(source),
        "threads": 2,
        "limits": {"max_concurrent": 4, "max_queue": 8, "timeout_s": 120},
        "options": {"n_ctx_per_seq": 512},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return ModelSpec.model_validate(data)


def metric(server: str, name: str, text: str | None = None, model: str = "gemma") -> float:
    """The value of one of the model's series in /metrics (0 when it is not there yet)."""
    text = httpx.get(f"{server}/metrics").text if text is None else text
    for line in text.splitlines():
        if line.startswith(name + "{") and f'model="{model}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_for_metric(
    server: str, name: str, ok: Callable[[float], bool], within_s: float = 30.0
) -> float:
    """Poll /metrics until ``name`` satisfies ``ok``; after ``within_s``, fail naming it."""
    deadline = time.monotonic() + within_s
    while True:
        value = metric(server, name)
        if ok(value):
            return value
        if time.monotonic() > deadline:
            lines = [ln for ln in httpx.get(f"{server}/metrics").text.splitlines() if name in ln]
            pytest.fail(f"{name} is {value} after {within_s} s: {lines}")
        time.sleep(0.02)


@contextmanager
def raw_request(server: str, path: str, body: dict[str, Any]) -> Iterator[socket.socket]:
    """Send a POST on a plain socket and hold the connection until the block ends, then close
    it without reading: a client that leaves at a moment the test chooses."""
    url = urlsplit(server)
    data = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    sock = socket.create_connection((url.hostname, url.port))
    try:
        sock.sendall(head.encode() + data)
        yield sock
    finally:
        sock.close()


def until_text(resp: httpx.Response) -> Iterator[str]:
    """Read an SSE response up to its first text chunk; returns the rest of its lines.

    Keep the returned iterator referenced while the stream should stay open: an abandoned
    line iterator is garbage-collected, and httpx then closes the connection.
    """
    lines = resp.iter_lines()
    for line in lines:
        if '"text"' in line:
            return lines
    pytest.fail("the stream ended without text")
