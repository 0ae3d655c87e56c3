"""``aimass recommend``: train a recommender from an interactions CSV, ask for a user's
recommendations or an item's neighbours, send new interactions (``/v1/recommendations``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aimass.cli import scenarios
from aimass.cli.files import ApiKey, Url, _fail

recommend_app = typer.Typer(help="Recommendations (/v1/recommendations).", no_args_is_help=True)
Count = Annotated[int, typer.Option("-n", min=1, max=1000, help="How many items.")]


@recommend_app.command("train")
def train(
    name: str,
    interactions: Path,
    items: Annotated[Path | None, typer.Option(help="Item metadata CSV (item,attr...).")] = None,
    param: scenarios.Params = None,
    no_promote: Annotated[bool, typer.Option("--no-promote")] = False,
    no_wait: scenarios.NoWait = False,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Upload INTERACTIONS (user,item[,weight][,timestamp]) and train a new version of NAME."""
    body = scenarios.training_body(url, api_key, name, interactions, param, no_promote)
    if items is not None:
        body["items_file"] = scenarios.upload(url, api_key, items)
    scenarios.train(url, api_key, "recommendations", body, not no_wait)


@recommend_app.command("user")
def user(
    model: str,
    user_id: str,
    n: Count = 10,
    include_seen: Annotated[bool, typer.Option("--include-seen")] = False,
    filter_: Annotated[
        list[str] | None, typer.Option("--filter", help="ATTRIBUTE=VALUE (repeatable).")
    ] = None,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Items recommended to USER_ID by MODEL, best first."""
    filters: dict[str, list[str]] = {}
    for pair in filter_ or []:
        key, sep, value = pair.partition("=")
        if not sep:
            _fail(f"--filter takes ATTRIBUTE=VALUE, got {pair!r}")
        filters.setdefault(key, []).append(value)
    body = {"model": model, "user": user_id, "n": n, "exclude_seen": not include_seen,
            "filter": filters}  # fmt: skip
    scenarios.post(url, api_key, "/v1/recommendations", body)


@recommend_app.command("similar")
def similar(model: str, item: str, n: Count = 10, url: Url = None, api_key: ApiKey = None) -> None:
    """Items most like ITEM."""
    scenarios.post(url, api_key, "/v1/recommendations/similar",
                   {"model": model, "item": item, "n": n})  # fmt: skip


@recommend_app.command("event")
def event(
    model: str,
    user_id: str,
    item: str,
    weight: Annotated[float, typer.Option(help="How strong (> 0).")] = 1.0,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Record that USER_ID interacted with ITEM (folded into the next answers at once)."""
    body = {"model": model, "events": [{"user": user_id, "item": item, "weight": weight}]}
    scenarios.post(url, api_key, "/v1/recommendations/events", body)
