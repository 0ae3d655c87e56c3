"""The risk writer thread: alerts that arrive together are committed together, each caller
answered after its alert is durable, with its webhook outbox rows; queued feature-state
writes are done before ``stop`` returns."""

from __future__ import annotations

import asyncio

import pytest

from aimass.registry import risk as rows
from aimass.registry.tables import utcnow
from aimass.serving.risk_writer import RiskWriter


@pytest.fixture()
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'reg.db'}"


def _alert(i: int) -> rows.NewAlert:
    top = [{"name": "amount", "value": 1.0, "contribution": 0.5}]
    return rows.NewAlert("fraud", 1, "block" if i % 2 else "review", 0.9, {"card": f"c{i}"},
                         ["big"], top)  # fmt: skip


def test_concurrent_alerts_share_commits_and_are_durable_with_their_outbox(url, monkeypatch):
    hook = rows.Webhook("wh_1", "http://127.0.0.1:9/", "s", None, "review", "admin", utcnow())
    rows.add_webhook(url, hook)
    calls: list[int] = []
    real = rows.add_alerts

    def counted(u, new):
        calls.append(len(new))
        return real(u, new)

    monkeypatch.setattr(rows, "add_alerts", counted)

    async def main() -> list[rows.Alert]:
        writer = RiskWriter(url)
        writer.start()
        try:
            return await asyncio.gather(*(writer.add_alert(_alert(i)) for i in range(40)))
        finally:
            await writer.stop()

    written = asyncio.run(main())
    assert [a.event["card"] for a in written] == [f"c{i}" for i in range(40)]
    assert len({a.id for a in written}) == 40
    assert sum(calls) == 40 and len(calls) < 40  # batched: fewer transactions than alerts
    stored = rows.alerts(url, limit=100)
    assert [a.id for a in stored] == sorted(a.id for a in written)
    assert rows.deliveries(url, "wh_1") == {"pending": 40}


def test_stop_writes_the_queued_feature_state_the_later_write_winning(url):
    async def main() -> None:
        writer = RiskWriter(url)
        writer.start()
        first = asyncio.ensure_future(writer.save_entities("m|k", {"card:1": {"n": 1}}))
        second = asyncio.ensure_future(
            writer.save_entities("m|k", {"card:1": {"n": 2}, "card:2": {"n": 1}})
        )
        await asyncio.sleep(0)
        await writer.stop()
        await asyncio.gather(first, second)

    asyncio.run(main())
    assert rows.load_entities(url, "m|k") == {"card:1": {"n": 2}, "card:2": {"n": 1}}


def test_alerts_page_oldest_or_newest_first_by_id(url):
    ids = [a.id for a in rows.add_alerts(url, [_alert(i) for i in range(6)])]
    assert [a.id for a in rows.alerts(url, after=ids[1], limit=2)] == ids[2:4]
    newest = rows.alerts(url, limit=2, newest_first=True)
    assert [a.id for a in newest] == ids[:-3:-1]
    after = rows.alerts(url, after=newest[-1].id, limit=10, newest_first=True, decision="block")
    assert [a.id for a in after] == [i for i in ids[3::-1] if i in ids[1::2]]
