"""``aimass fine-tune create``: upload a training file, start a fine-tuning job, show its
progress until it ends.

An HTTP client of the server (``/v1/files`` and ``/v1/fine_tuning/jobs``, with
``AIMASS_API_KEY``); the job then shows in ``aimass jobs list|show|events|cancel`` too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from aimass.cli.files import ApiKey, Url, _fail, _request
from aimass.cli.jobs import _follow

fine_tune_app = typer.Typer(help="Fine-tuning jobs (/v1/fine_tuning/jobs).", no_args_is_help=True)


def _upload(path: Path, url: str | None, key: str | None) -> str:
    with path.open("rb") as f:
        files = {"file": (path.name, f)}
        made = _request("POST", url, key, "/v1/files", data={"purpose": "fine-tune"}, files=files)
    return made.json()["id"]


@fine_tune_app.command("create")
def create(
    model: Annotated[str, typer.Argument(help="The base model (name or name:version).")],
    file: Annotated[
        Path, typer.Option("--file", exists=True, dir_okay=False, help="Training file.")
    ],
    validation: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="Validation file (else 20 % held out)."),
    ] = None,
    suffix: Annotated[str | None, typer.Option(help="Part of the new model's name.")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, max=50, help="n_epochs.")] = None,
    wait: Annotated[bool, typer.Option(help="Show progress until the job ends.")] = True,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Upload FILE (and the validation file), create the job, follow it; prints the job."""
    body: dict[str, Any] = {"model": model, "training_file": _upload(file, url, api_key)}
    if validation is not None:
        body["validation_file"] = _upload(validation, url, api_key)
    if suffix:
        body["suffix"] = suffix
    if epochs:
        body["hyperparameters"] = {"n_epochs": epochs}
    job = _request("POST", url, api_key, "/v1/fine_tuning/jobs", json=body).json()
    typer.echo(job["id"], err=True)
    if wait:
        _follow(job["id"], url, api_key)
        job = _request("GET", url, api_key, f"/v1/fine_tuning/jobs/{job['id']}").json()
    typer.echo(json.dumps(job, indent=2))
    if job["status"] == "failed":
        _fail(job["error"]["message"])
