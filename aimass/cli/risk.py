"""``aimass risk``: train a risk model from a transactions file, score an event, follow and
acknowledge alerts, on a running server (HTTP client of /v1/risk, with ``AIMASS_API_KEY``).

    aimass risk train fraud tx.csv --param entities='["card","device"]'
    aimass risk score fraud '{"timestamp": 1750000000, "card": "c1", "amount": 950}'
    aimass risk alerts --follow
    aimass risk ack 42
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from aimass.cli.files import ApiKey, Url, _fail, _request
from aimass.cli.jobs import _follow
from aimass.errors import InvalidInput

risk_app = typer.Typer(help="Fraud and risk scoring (/v1/risk).", no_args_is_help=True)


def _params(pairs: list[str]) -> dict[str, Any]:
    from aimass.cli.main import _parse_options

    try:
        return _parse_options(pairs, "--param")
    except InvalidInput as exc:
        _fail(str(exc))


@risk_app.command("train")
def train(
    name: str,
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV or JSONL.")],
    validation: Annotated[Path | None, typer.Option(exists=True, dir_okay=False)] = None,
    param: Annotated[
        list[str], typer.Option("--param", "-p", help="A training parameter, KEY=VALUE.")
    ] = [],  # noqa: B006 - typer reads the default, never mutates it
    no_promote: Annotated[bool, typer.Option("--no-promote")] = False,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Upload the file, start the training job, show its progress, print the job."""
    body: dict[str, Any] = {"name": name, "hyperparameters": _params(param),
                            "auto_promote": not no_promote}  # fmt: skip
    for field, file in (("training_file", path), ("validation_file", validation)):
        if file is None:
            continue
        with file.open("rb") as f:
            files = {"file": (file.name, f)}
            made = _request("POST", url, api_key, "/v1/files", data={"purpose": "user_data"},
                            files=files)  # fmt: skip
        body[field] = made.json()["id"]
    job = _request("POST", url, api_key, "/v1/risk/models", json=body).json()
    job = _follow(job["id"], url, api_key)
    typer.echo(json.dumps(job, indent=2))
    if job["status"] != "completed":
        raise typer.Exit(1)


@risk_app.command("score")
def score(
    model: str,
    event: Annotated[str, typer.Argument(help="The event as a JSON object.")],
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Score one event; prints the answer (score, decision, rules, top features)."""
    try:
        parsed = json.loads(event)
    except ValueError as exc:
        _fail(f"the event is not JSON: {exc}")
    answer = _request("POST", url, api_key, "/v1/risk/score",
                      json={"model": model, "event": parsed})  # fmt: skip
    typer.echo(json.dumps(answer.json(), indent=2))


def _line(alert: dict[str, Any]) -> str:
    top = ", ".join(f"{t['name']}={t['value']:g}" for t in alert["top_features"][:3])
    acked = f"  acked by {alert['acked_by']}" if alert["acked_at"] else ""
    return (
        f"{alert['id']:>6}  {alert['model']}:{alert['version']}  {alert['decision']:<6} "
        f"{alert['score']:.3f}  rules={','.join(alert['rules']) or '-'}  {top}{acked}"
    )


@risk_app.command("alerts")
def alerts(
    model: Annotated[str | None, typer.Option(help="Only this model's alerts.")] = None,
    unacked: Annotated[bool, typer.Option("--unacked", help="Only open alerts.")] = False,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Then wait for more.")] = False,
    after: Annotated[int, typer.Option(min=0, help="Only alerts after this id.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object a line.")] = False,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """List alerts, oldest first; with --follow, then stream new ones (SSE) until Ctrl-C."""
    import httpx

    from aimass.cli.main import _server_url

    params: dict[str, Any] = {"limit": 100, "after": after}
    if model:
        params["model"] = model
    if unacked:
        params["acked"] = "false"
    while True:
        page = _request("GET", url, api_key, "/v1/risk/alerts", params=params).json()
        for alert in page["data"]:
            typer.echo(json.dumps(alert) if as_json else _line(alert))
            params["after"] = alert["id"]
        if not page["has_more"]:
            break
    if not follow:
        return
    base = (url or _server_url()).rstrip("/")
    headers = {"Last-Event-ID": str(params["after"])}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    query = {"model": model} if model else {}
    try:
        with httpx.stream("GET", f"{base}/v1/risk/alerts/stream", params=query,
                          headers=headers, timeout=None) as stream:  # fmt: skip
            if stream.status_code != 200:
                _fail(f"GET /v1/risk/alerts/stream: {stream.status_code}")
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    alert = json.loads(line[6:])
                    typer.echo(json.dumps(alert) if as_json else _line(alert))
    except KeyboardInterrupt:
        return


@risk_app.command("ack")
def ack(alert_id: int, url: Url = None, api_key: ApiKey = None) -> None:
    """Acknowledge an alert (recorded with the key's name)."""
    answer = _request("POST", url, api_key, f"/v1/risk/alerts/{alert_id}/ack").json()
    typer.echo(_line(answer))
