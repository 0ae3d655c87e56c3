"""``aimass files``: upload, list, show, read and delete files on a running server.

Files live with the server (``AIMASS_HOME/files`` there) and belong to the API key that
uploaded them, so these commands talk to the server over HTTP like any client, with
``AIMASS_API_KEY``; an upload shows a progress bar on stderr and prints the new id on stdout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, BinaryIO, NoReturn

import typer

files_app = typer.Typer(help="Upload and manage files (/v1/files).", no_args_is_help=True)

Url = Annotated[
    str | None,
    typer.Option(help="Server base URL [default: http://AIMASS_HOST:AIMASS_PORT]."),
]
ApiKey = Annotated[
    str | None, typer.Option(envvar="AIMASS_API_KEY", help="API key, sent as a Bearer token.")
]
PURPOSES = "assistants, batch, fine-tune, vision, user_data"


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _request(method: str, url: str | None, key: str | None, path: str, **kw: Any):
    """One request; the response when it succeeded, else one line on stderr and exit 1."""
    import httpx

    from aimass.cli.main import _error_text, _server_url

    base = (url or _server_url()).rstrip("/")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        resp = httpx.request(method, base + path, headers=headers, timeout=600, **kw)
    except httpx.HTTPError as exc:
        _fail(f"{method} {base + path}: {exc or type(exc).__name__} (is `aimass serve` running?)")
    if resp.status_code >= 400:
        try:
            answer = resp.json()
        except ValueError:
            answer = None
        _fail(f"{method} {base + path}: {resp.status_code} {_error_text(answer, resp.text)}")
    return resp


class _Progress:
    """A file object that advances a progress bar as httpx reads it for the upload."""

    def __init__(self, f: BinaryIO, bar) -> None:
        self.f, self.bar = f, bar

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.bar.update(len(data))
        return data

    def __getattr__(self, name: str):
        return getattr(self.f, name)


@files_app.command("upload")
def upload(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="File to upload.")],
    purpose: Annotated[str, typer.Option(help=f"One of {PURPOSES}.")] = "user_data",
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Upload a file; prints its id."""
    size = path.stat().st_size
    with (
        path.open("rb") as f,
        typer.progressbar(length=size, label=path.name, file=sys.stderr, show_pos=True) as bar,
    ):
        files = {"file": (path.name, _Progress(f, bar))}
        made = _request("POST", url, api_key, "/v1/files", data={"purpose": purpose}, files=files)
    typer.echo(made.json()["id"])


@files_app.command("list")
def list_(
    purpose: Annotated[str | None, typer.Option(help="Only files of this purpose.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="The answer as JSON.")] = False,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """List files, newest first."""
    params = {"limit": limit, **({"purpose": purpose} if purpose else {})}
    answer = _request("GET", url, api_key, "/v1/files", params=params).json()
    if as_json:
        typer.echo(json.dumps(answer, indent=2))
        return
    for f in answer["data"]:
        typer.echo(f"{f['id']}  {f['purpose']:<10} {f['bytes']:>12}  {f['filename']}")


@files_app.command("show")
def show(file_id: str, url: Url = None, api_key: ApiKey = None) -> None:
    """Print one file's metadata as JSON."""
    answer = _request("GET", url, api_key, f"/v1/files/{file_id}").json()
    typer.echo(json.dumps(answer, indent=2))


@files_app.command("content")
def content(
    file_id: str,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Write a file's bytes to --output (or stdout)."""
    data = _request("GET", url, api_key, f"/v1/files/{file_id}/content").content
    if output is None:
        sys.stdout.buffer.write(data)
    else:
        output.write_bytes(data)


@files_app.command("delete")
def delete(file_id: str, url: Url = None, api_key: ApiKey = None) -> None:
    """Delete a file."""
    _request("DELETE", url, api_key, f"/v1/files/{file_id}")
    typer.echo(f"deleted {file_id}")
