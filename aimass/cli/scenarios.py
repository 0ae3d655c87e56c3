"""What ``aimass recommend`` and ``aimass forecast`` share: upload a training file, start a
training job, and follow it with a progress bar until it ends (HTTP clients of the server,
like ``aimass files`` and ``aimass jobs``)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from aimass.cli.files import _fail, _request

Params = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", help="A hyperparameter as NAME=VALUE (VALUE read as JSON)."),
]
NoWait = Annotated[bool, typer.Option("--no-wait", help="Print the job and return at once.")]
FINISHED = {"completed", "failed", "cancelled", "expired"}
POLL_S = 0.5


def hyperparameters(pairs: list[str] | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for pair in pairs or []:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            _fail(f"--param takes NAME=VALUE, got {pair!r}")
        try:
            values[name] = json.loads(text)
        except ValueError:
            values[name] = text
    return values


def upload(url: str | None, key: str | None, path: Path) -> str:
    if not path.is_file():
        _fail(f"{path} is not a file")
    with open(path, "rb") as handle:
        files = {"file": (path.name, handle, "text/csv")}
        made = _request("POST", url, key, "/v1/files", data={"purpose": "fine-tune"}, files=files)
    return made.json()["id"]


def training_body(
    url: str | None,
    key: str | None,
    name: str,
    path: Path,
    params: list[str] | None,
    no_promote: bool,
) -> dict[str, Any]:
    """The ``POST /v1/<family>/models`` body, ``path`` uploaded as the training file."""
    return {
        "name": name,
        "training_file": upload(url, key, path),
        "hyperparameters": hyperparameters(params),
        "auto_promote": not no_promote,
    }


def train(url: str | None, key: str | None, family: str, body: dict[str, Any], wait: bool) -> None:
    """Start the job; with ``wait``, draw its progress until it ends, then print it (exit 1
    when it failed)."""
    job = _request("POST", url, key, f"/v1/{family}/models", json=body).json()
    if wait:
        job = _follow(url, key, job)
    typer.echo(json.dumps(job, indent=2))
    if job["status"] == "failed":
        raise typer.Exit(1)


def _follow(url: str | None, key: str | None, job: dict[str, Any]) -> dict[str, Any]:
    with typer.progressbar(length=100, label=job["kind"], file=sys.stderr) as bar:
        shown = 0
        while job["status"] not in FINISHED:
            time.sleep(POLL_S)
            job = _request("GET", url, key, f"/v1/jobs/{job['id']}").json()
            p = job["progress"]
            step, steps = p.get("step") or p.get("series_done"), p.get("steps") or p.get("total")
            now = int(100 * step / steps) if step and steps else shown
            bar.update(now - shown)
            shown = now
        bar.update(100 - shown)
    return job


def post(url: str | None, key: str | None, path: str, body: dict[str, Any]) -> None:
    typer.echo(json.dumps(_request("POST", url, key, path, json=body).json(), indent=2))
