"""``aimass stores``: create, fill, search, list and delete vector stores on a running server.

Like ``aimass files``, these commands are HTTP clients of the server (``AIMASS_API_KEY``):
files are uploaded to ``/v1/files`` and added to the store; ``create`` and ``add`` then show
a progress bar on stderr until every file is ingested (``--no-wait`` returns at once).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from aimass.cli.files import ApiKey, Url, _fail, _request

stores_app = typer.Typer(help="Vector stores (/v1/vector_stores).", no_args_is_help=True)

Paths = Annotated[
    list[Path] | None,
    typer.Option("--file", "-f", exists=True, dir_okay=False, help="A file to upload and add."),
]
Attributes = Annotated[
    list[str] | None,
    typer.Option("--attr", help="An attribute KEY=VALUE of every added file (numbers kept)."),
]
Wait = Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until ingested.")]


def _upload(paths: list[Path], url: str | None, key: str | None) -> list[str]:
    ids = []
    for path in paths:
        with path.open("rb") as f:
            made = _request(
                "POST",
                url,
                key,
                "/v1/files",
                data={"purpose": "assistants"},
                files={"file": (path.name, f)},
            )
        ids.append(made.json()["id"])
    return ids


def _attributes(pairs: list[str]) -> dict:
    out: dict = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            _fail(f"--attr {pair!r}: expected KEY=VALUE")
        try:
            out[name] = json.loads(value) if value not in ("", "null") else value
        except ValueError:
            out[name] = value
        if not isinstance(out[name], str | int | float | bool):
            out[name] = value
    return out


def _wait(store_id: str, url: str | None, key: str | None, batch_id: str | None = None) -> dict:
    """Poll the store (or batch) with a progress bar until nothing is in progress."""
    path = f"/v1/vector_stores/{store_id}" + (f"/file_batches/{batch_id}" if batch_id else "")
    counts = _request("GET", url, key, path).json()["file_counts"]
    with typer.progressbar(length=counts["total"], label="ingesting", file=sys.stderr) as bar:
        done = 0
        while True:
            counts = _request("GET", url, key, path).json()["file_counts"]
            now = counts["total"] - counts["in_progress"]
            bar.update(now - done)
            done = now
            if not counts["in_progress"]:
                return counts
            time.sleep(0.5)


def _report(counts: dict) -> None:
    typer.echo(
        f"{counts['completed']} completed, {counts['failed']} failed, "
        f"{counts['cancelled']} cancelled",
        err=True,
    )


@stores_app.command("create")
def create(
    name: str,
    files: Paths = None,
    embedding_model: Annotated[
        str | None, typer.Option(help="Embedding model [default: the server's].")
    ] = None,
    wait: Wait = True,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Create a store (uploading and adding --file files); prints its id."""
    body: dict = {"name": name, "file_ids": _upload(files or [], url, api_key)}
    if embedding_model:
        body["embedding_model"] = embedding_model
    store = _request("POST", url, api_key, "/v1/vector_stores", json=body).json()
    if wait and body["file_ids"]:
        _report(_wait(store["id"], url, api_key))
    typer.echo(store["id"])


@stores_app.command("add")
def add(
    store_id: str,
    paths: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False)],
    attr: Attributes = None,
    wait: Wait = True,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Upload files and add them to a store as one batch; prints the batch id."""
    body = {"file_ids": _upload(paths, url, api_key), "attributes": _attributes(attr or [])}
    path = f"/v1/vector_stores/{store_id}/file_batches"
    batch = _request("POST", url, api_key, path, json=body).json()
    if wait:
        _report(_wait(store_id, url, api_key, batch["id"]))
    typer.echo(batch["id"])


@stores_app.command("search")
def search(
    store_id: str,
    query: str,
    mode: Annotated[str, typer.Option(help="vector, keyword or hybrid.")] = "hybrid",
    limit: Annotated[int, typer.Option(min=1, max=50)] = 5,
    rerank_model: Annotated[str | None, typer.Option(help="A loaded rerank model.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The answer as JSON.")] = False,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Search a store; prints score, file and the chunk's text."""
    body = {"query": query, "search_mode": mode, "max_num_results": limit}
    if rerank_model:
        body["rerank_model"] = rerank_model
    path = f"/v1/vector_stores/{store_id}/search"
    answer = _request("POST", url, api_key, path, json=body).json()
    if as_json:
        typer.echo(json.dumps(answer, indent=2))
        return
    for hit in answer["data"]:
        text = " ".join(hit["content"][0]["text"].split())
        typer.echo(f"{hit['score']:.3f}  {hit['filename'] or hit['file_id']}  {text[:200]}")


@stores_app.command("list")
def list_(
    limit: Annotated[int, typer.Option(min=1, max=100)] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="The answer as JSON.")] = False,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """List stores, newest first."""
    answer = _request("GET", url, api_key, "/v1/vector_stores", params={"limit": limit}).json()
    if as_json:
        typer.echo(json.dumps(answer, indent=2))
        return
    for s in answer["data"]:
        c = s["file_counts"]
        typer.echo(
            f"{s['id']}  {s['status']:<11} {c['completed']}/{c['total']} files  "
            f"{s['embedding_model']}  {s['name']}"
        )


@stores_app.command("delete")
def delete(store_id: str, url: Url = None, api_key: ApiKey = None) -> None:
    """Delete a store (its files stay in /v1/files)."""
    _request("DELETE", url, api_key, f"/v1/vector_stores/{store_id}")
    typer.echo(f"deleted {store_id}")
