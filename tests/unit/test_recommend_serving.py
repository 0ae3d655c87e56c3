"""What makes served recommendations cheap without changing them: a batch of users answered in
one ``implicit`` call gives each user what a call of its own gives, and the cache of users'
stored events (``serving.scenarios.StateCache``) never serves an event list older than
a write."""

from __future__ import annotations

import asyncio
import random
from functools import partial

import pytest

from aimass.registry import recommendations as events
from aimass.scenarios.recommend.data import read_interactions, read_items
from aimass.scenarios.recommend.model import Ask, Recommender, hyperparameters, train
from aimass.serving import scenarios
from aimass.serving.recommendations import folded_events
from aimass.serving.scenarios import StateCache
from examples.data.make_recommend import generate


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Recommender:
    data = tmp_path_factory.mktemp("shop")
    generate(300, 80, 12, 30, 3, data)
    params = hyperparameters({"factors": 8, "iterations": 4})
    return train(
        read_interactions(data / "interactions.csv"), params, read_items(data / "items.csv")
    )


def test_a_batch_answers_each_user_as_a_call_of_its_own(model):
    rng = random.Random(0)
    category = next(iter(model.attributes.values()))["category"]
    asks = [
        Ask(rng.choice(model.user_ids) if j % 5 else f"stranger{j}", rng.choice([3, 10]),
            exclude_seen=j % 7 != 0, filters={"category": [category]} if j % 4 == 0 else {},
            events=[(rng.choice(model.item_ids), 2.0)] if j % 3 == 1 else [])
        for j in range(120)
    ]  # fmt: skip
    together = model.recommend_many(asks)
    for ask, got in zip(asks, together, strict=True):
        alone = model.recommend(ask.user, ask.n, ask.exclude_seen, ask.filters, ask.events)
        assert [x["item"] for x in got["items"]] == [x["item"] for x in alone["items"]], ask
        assert (got["fallback"], got.get("folded_in")) == (
            alone["fallback"],
            alone.get("folded_in"),
        )
        # a batch's scores are summed by BLAS in another order: equal to float32 rounding
        assert [x["score"] for x in got["items"]] == pytest.approx(
            [x["score"] for x in alone["items"]], rel=1e-5, abs=1e-6
        )
    assert {a["fallback"] for a in together} == {None, "popularity"}
    assert any(a.get("folded_in") for a in together) and any(a["items"] for a in together)


def test_stored_events_are_cached_until_a_write_invalidates_them(tmp_path):
    url = f"sqlite:///{tmp_path}/registry.db"

    def cache_of(sync_s: float, capacity: int = 100) -> StateCache:
        return StateCache(partial(folded_events, url), partial(events.users_written_after, url),
                          sync_s, capacity)  # fmt: skip

    cache = cache_of(3600, capacity=3)

    async def run() -> None:
        assert await cache.get("m", "u1", None) == ()
        events.add_events(url, "m", [("u1", "i1", 2.0, None)])
        assert await cache.get("m", "u1", None) == ()  # cached: no read per request
        cache.invalidate("m", {"u1"})  # what this server's /events does after its write
        assert await cache.get("m", "u1", None) == (("i1", 2.0),)
        assert await cache.get("m", "nobody", None) == () and cache.held == 1  # no events: no entry
        later = [(f"u{i}", "i1", 1.0, None) for i in range(2, 6)]
        events.add_events(url, "m", later)
        cache.invalidate("m", {user for user, *_ in later})
        for user, *_ in later:
            assert await cache.get("m", user, None) == (("i1", 1.0),)
        assert cache.held == 3  # the least recently used were dropped

        elsewhere = cache_of(0.0)  # a second server on the same database
        assert await elsewhere.get("m", "u1", None) == (("i1", 2.0),)
        events.add_events(url, "m", [("u1", "i2", 1.0, None)])
        assert await elsewhere.get("m", "u1", None) == (("i1", 2.0), ("i2", 1.0))
        assert await elsewhere.get("m", "fresh", None) == ()
        events.add_events(url, "m", [("fresh", "i3", 1.0, None)])
        assert await elsewhere.get("m", "fresh", None) == (("i3", 1.0),)

    asyncio.run(run())


def test_a_row_that_commits_below_an_id_already_seen_is_still_found(monkeypatch):
    """PostgreSQL draws ids at insert and shows rows at commit: id 3 can appear after id 4."""
    monkeypatch.setattr(scenarios, "COMMIT_LAG_S", 3600.0)
    committed: list[tuple[int, str]] = [(1, "a"), (2, "b")]
    stored = {"a": ("x",), "b": ("y",), "c": ()}

    def written_after(model: str, after: int | None) -> tuple[set[str], int]:
        keys = {key for row, key in committed if after is None or row > after}
        return keys, max(row for row, _ in committed)

    cache = StateCache(lambda model, key, since: stored[key], written_after, sync_s=0.0)

    async def run() -> None:
        assert await cache.get("m", "a", None) == ("x",)  # first look: ids up to 2
        committed.append((4, "b"))  # id 3 is drawn first (key "a") but commits last
        stored["b"] = ("y", "y2")
        assert await cache.get("m", "b", None) == ("y", "y2")  # this look saw id 4
        committed.append((3, "a"))
        stored["a"] = ("x", "x2")
        assert await cache.get("m", "a", None) == ("x", "x2")

    asyncio.run(run())
