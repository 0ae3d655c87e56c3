"""``aimass jobs``: list, show, follow the events of, and cancel durable jobs on a running server.

Like ``aimass files``, these commands are HTTP clients of the server (``/v1/jobs``, with
``AIMASS_API_KEY``): a key sees its own jobs, an admin key every job. ``show --wait`` draws a
progress bar on stderr until the job ends; ``events --follow`` prints events as they come.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from aimass.cli.files import ApiKey, Url, _request

jobs_app = typer.Typer(help="Durable jobs: batches, fine-tuning (/v1/jobs).", no_args_is_help=True)

AsJson = Annotated[bool, typer.Option("--json", help="The answer as JSON.")]
FINISHED = {"completed", "succeeded", "failed", "cancelled", "expired"}
POLL_S = 0.5


def _when(unix: int | None) -> str:
    if unix is None:
        return "-"
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _done(job: dict[str, Any]) -> str:
    p = job["progress"]
    counts = job["result"].get("request_counts") or p
    if "total" not in counts:
        return "-"
    return f"{counts.get('completed', 0) + counts.get('failed', 0)}/{counts['total']}"


@jobs_app.command("list")
def list_(
    kind: Annotated[
        str | None, typer.Option(help="Only jobs of this kind (batch, fine_tune).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    as_json: AsJson = False,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """List jobs, newest first: id, kind, status, progress, created, owner."""
    params: dict[str, Any] = {"limit": limit, **({"kind": kind} if kind else {})}
    answer = _request("GET", url, api_key, "/v1/jobs", params=params).json()
    if as_json:
        typer.echo(json.dumps(answer, indent=2))
        return
    for job in answer["data"]:
        typer.echo(
            f"{job['id']}  {job['kind']:<6} {job['status']:<11} {_done(job):>11}  "
            f"{_when(job['created_at'])}  {job['owner']}"
        )


@jobs_app.command("show")
def show(
    job_id: str,
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until it ends.")] = False,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """A job as JSON (with --wait: after a progress bar on stderr, once it has ended)."""
    job = _request("GET", url, api_key, f"/v1/jobs/{job_id}").json()
    if wait and job["status"] not in FINISHED:
        job = _follow(job_id, url, api_key)
    typer.echo(json.dumps(job, indent=2))


def _follow(job_id: str, url: str | None, key: str | None) -> dict[str, Any]:
    """Poll the job with a progress bar (lines done of lines) until it ends."""
    job = _request("GET", url, key, f"/v1/jobs/{job_id}").json()
    total = int(job["progress"].get("total") or 0)
    with typer.progressbar(length=max(total, 1), label=job["kind"], file=sys.stderr) as bar:
        shown = 0
        while True:
            p = job["progress"]
            now = int(p.get("completed", 0)) + int(p.get("failed", 0))
            if total == 0 and p.get("total"):
                total = bar.length = int(p["total"])
            bar.update(now - shown)
            shown = now
            if job["status"] in FINISHED:
                return job
            time.sleep(POLL_S)
            job = _request("GET", url, key, f"/v1/jobs/{job_id}").json()


@jobs_app.command("events")
def events(
    job_id: str,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Wait for more.")] = False,
    as_json: AsJson = False,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """A job's events, oldest first (with --follow: until the job ends)."""
    after = 0
    while True:
        path = f"/v1/jobs/{job_id}/events"
        page = _request("GET", url, api_key, path, params={"after": after}).json()
        for event in page["data"]:
            after = event["seq"]
            if as_json:
                typer.echo(json.dumps(event))
            else:
                data = f"  {json.dumps(event['data'])}" if event["data"] else ""
                typer.echo(
                    f"{_when(event['created_at'])}  {event['level']:<7} {event['message']}{data}"
                )
        if page["has_more"]:
            continue
        if not follow:
            return
        if _request("GET", url, api_key, f"/v1/jobs/{job_id}").json()["status"] in FINISHED:
            return
        time.sleep(POLL_S)


@jobs_app.command("cancel")
def cancel(job_id: str, url: Url = None, api_key: ApiKey = None) -> None:
    """Ask a job to stop; it ends ``cancelled`` within seconds, keeping what it finished."""
    job = _request("POST", url, api_key, f"/v1/jobs/{job_id}/cancel").json()
    typer.echo(f"{job['id']}  {job['status']}")
