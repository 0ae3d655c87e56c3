"""Key store, usage counters and audit log against a real SQLite file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from aimass.errors import Conflict, InvalidInput, NotFound
from aimass.registry import audit, keys
from aimass.registry.usage import Counts, period_bounds, query_usage, tokens_since, write_usage


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'aimass.db'}"


def _db_bytes(tmp_path) -> bytes:
    return b"".join(p.read_bytes() for p in tmp_path.glob("aimass.db*"))


def test_create_stores_only_a_hash(url, tmp_path):
    info, key = keys.create_key(url, "alice", models=frozenset({"m1"}), rpm=10)
    assert key.startswith(f"am-{info.public_id}-")
    secret = key.split("-", 2)[2]
    assert len(secret) >= 40
    raw = _db_bytes(tmp_path)
    assert key.encode() not in raw and secret.encode() not in raw
    assert keys.hash_key(key).encode() in raw
    found = keys.find_by_public_id(url, info.public_id)
    assert found is not None and found.matches(key)
    assert not found.matches(key[:-1] + ("A" if key[-1] != "A" else "B"))
    assert found.allows("m1") and not found.allows("m2")


def test_public_id_parsing():
    _, key = keys.new_key()
    assert keys.public_id_of(key) == key.split("-")[1]
    for bad in ("", "sk-abc", "am-short-x", "am-0123456789ab-", "EMPTY"):
        assert keys.public_id_of(bad) is None


def test_revoke_rotate_and_expiry(url):
    info, old = keys.create_key(url, "bob", expires_in=timedelta(hours=1))
    assert info.state() == "active"
    assert info.state(now=datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=2)) == "expired"
    rotated, new = keys.rotate_key(url, "bob")
    assert rotated.public_id != info.public_id and new != old
    assert keys.find_by_public_id(url, info.public_id) is None
    assert keys.find_by_public_id(url, rotated.public_id).matches(new)
    assert not rotated.matches(old)
    assert keys.revoke_key(url, "bob").state() == "revoked"
    with pytest.raises(Conflict):
        keys.rotate_key(url, "bob")


def test_names_limits_and_admin_detection(url):
    with pytest.raises(InvalidInput):
        keys.create_key(url, "bad name")
    with pytest.raises(InvalidInput):  # "$" alone would let a trailing newline through
        keys.create_key(url, "ops\n")
    with pytest.raises(InvalidInput, match="period"):
        keys.create_key(url, "c", budget_tokens=100)
    with pytest.raises(InvalidInput, match="rpm"):
        keys.create_key(url, "c", rpm=0)
    keys.create_key(url, "c")
    with pytest.raises(Conflict):
        keys.create_key(url, "c")
    with pytest.raises(NotFound):
        keys.revoke_key(url, "nobody")
    assert not keys.has_admin_key(url)
    keys.create_key(url, "root", admin=True)
    assert keys.has_admin_key(url)
    keys.revoke_key(url, "root")
    assert not keys.has_admin_key(url)


def test_update_changes_limits(url):
    keys.create_key(url, "d", rpm=5)
    info = keys.update_key(url, "d", rpm=None, tpm=100, models=frozenset({"x"}))
    assert (info.rpm, info.tpm, info.models) == (None, 100, frozenset({"x"}))


def test_limits_and_lifetimes_fit_what_the_database_holds(url):
    """Past 2**31 - 1 (PostgreSQL's INTEGER) or the year 9999, a 400 naming the field instead
    of an overflow deep in the database driver."""
    for field in ("rpm", "tpm", "budget_tokens"):
        with pytest.raises(InvalidInput, match=f"{field} must be a positive integer up to"):
            keys.create_key(url, "e", **{field: keys.MAX_LIMIT + 1}, budget_period="day")
    info, _ = keys.create_key(url, "e", rpm=keys.MAX_LIMIT)
    assert info.rpm == keys.MAX_LIMIT
    with pytest.raises(InvalidInput, match="rpm"):
        keys.update_key(url, "e", rpm=2**63)
    for text in ("99999999999d", "3000000w", "1" * 5000 + "d"):
        with pytest.raises(InvalidInput, match="expires"):
            keys.parse_duration(text)


def test_parsers():
    assert keys.parse_duration("30d") == timedelta(days=30)
    assert keys.parse_duration("12h") == timedelta(hours=12)
    with pytest.raises(InvalidInput):
        keys.parse_duration("soon")
    assert keys.parse_models("all") is None
    assert keys.parse_models("a, b") == frozenset({"a", "b"})


def test_usage_accumulates_per_key_model_day(url):
    day = datetime.now(UTC).date().isoformat()
    batch = {(1, "k", "m", day): Counts(2, 10, 5, 1)}
    write_usage(url, batch)
    write_usage(url, {(1, "k", "m", day): Counts(1, 1, 1, 0), (1, "k", "m2", day): Counts(1)})
    rows = {r["model"]: r for r in query_usage(url, key_name="k")}
    assert rows["m"]["requests"] == 3 and rows["m"]["total_tokens"] == 17
    assert rows["m"]["errors"] == 1 and rows["m2"]["requests"] == 1
    assert tokens_since(url, {1: day}) == {1: 17}
    assert tokens_since(url, {1: "2999-01-01"}) == {}


def test_period_bounds():
    start, end = period_bounds("month", datetime(2024, 12, 15, 8, tzinfo=UTC))
    assert start.isoformat() == "2024-12-01" and end == datetime(2025, 1, 1, tzinfo=UTC)
    start, end = period_bounds("day", datetime(2024, 2, 29, 23, tzinfo=UTC))
    assert start.isoformat() == "2024-02-29" and end == datetime(2024, 3, 1, tzinfo=UTC)


def test_audit_append_and_list(url):
    audit.append(url, actor="a", action="key.create", target="x", source="cli", result="ok")
    audit.append(url, actor="b", action="model.load", target="m", source="1.2.3.4", result="denied")
    rows = audit.entries(url)
    assert [r["action"] for r in rows] == ["model.load", "key.create"]
    assert audit.entries(url, actor="a")[0]["target"] == "x"


def test_cli_keys_usage_audit(tmp_path, monkeypatch):
    monkeypatch.setenv("AIMASS_HOME", str(tmp_path))
    from aimass.cli.main import app

    runner = CliRunner()
    out = runner.invoke(app, ["keys", "create", "--name", "ci", "--models", "a,b", "--rpm", "5"])
    assert out.exit_code == 0, out.output
    key = out.output.strip().splitlines()[-1]
    assert keys.public_id_of(key) is not None
    listed = runner.invoke(app, ["keys", "list"])
    assert "ci" in listed.output and key not in listed.output
    assert runner.invoke(app, ["keys", "create", "--name", "ci"]).exit_code == 1
    rotated = runner.invoke(app, ["keys", "rotate", "ci"])
    assert rotated.exit_code == 0 and rotated.output.strip().splitlines()[-1] != key
    assert runner.invoke(app, ["keys", "update", "ci", "--rpm", "0"]).exit_code == 0
    assert runner.invoke(app, ["keys", "revoke", "ci"]).exit_code == 0
    assert "revoked" in runner.invoke(app, ["keys", "list"]).output
    trail = runner.invoke(app, ["audit"]).output
    for action in ("key.create", "key.rotate", "key.update", "key.revoke"):
        assert action in trail
    assert "error" in trail  # the duplicate create was recorded as failed
    assert runner.invoke(app, ["usage"]).exit_code == 0
    assert key not in _db_bytes(tmp_path).decode("latin-1")
