"""FileStore on a SQLite registry and the local disk: what a crash at each step leaves, the
size limit, ownership filters, pages, and the sweep of expired files and leftovers."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest

from aimass.errors import NotFound, PayloadTooLarge
from aimass.files.storage import LocalFileStorage
from aimass.files.store import ANY_OWNER, FileStore, Owner, clean_filename
from aimass.registry import files as rows
from aimass.registry.tables import utcnow

ALICE, BOB = Owner(1, "alice"), Owner(2, "bob")


@pytest.fixture
def store(tmp_path) -> FileStore:
    return FileStore(f"sqlite:///{tmp_path / 'r.db'}", LocalFileStorage(tmp_path / "files"), 100)


def blobs(store: FileStore) -> list[str]:
    return sorted(key for key, _ in store.storage.entries())


def test_a_file_is_stored_whole_then_recorded(store):
    record = store.create(ALICE, "../../etc/a.txt", "batch", [b"hello ", b"world"])
    assert record.filename == "a.txt" and record.bytes == 11
    assert record.sha256 == hashlib.sha256(b"hello world").hexdigest()
    assert b"".join(store.read(store.get(record.id, 1))) == b"hello world"
    assert blobs(store) == [record.storage_key]
    assert not list(store.storage.tmp.iterdir())


def test_nothing_is_visible_before_finish_and_abort_leaves_nothing(store):
    upload = store.upload(ALICE, "a.txt", "batch")
    upload.write(b"partial")
    assert blobs(store) == [] and store.page(ANY_OWNER, purpose=None, after=None, limit=10,
                                             newest_first=True) == []  # fmt: skip
    upload.abort()
    assert not list(store.storage.tmp.iterdir())


def test_over_the_limit_is_a_413_naming_max_file_bytes_and_leaves_nothing(store):
    with pytest.raises(PayloadTooLarge) as err:
        store.create(ALICE, "big.bin", "batch", [b"x" * 60, b"x" * 41])
    assert err.value.param == "max_file_bytes"
    assert blobs(store) == [] and not list(store.storage.tmp.iterdir())


def test_a_row_that_fails_to_write_takes_its_bytes_with_it(store, monkeypatch):
    def fail(url, record):
        raise RuntimeError("database gone")

    monkeypatch.setattr(rows, "add", fail)
    with pytest.raises(RuntimeError):
        store.create(ALICE, "a.txt", "batch", [b"abc"])
    assert blobs(store) == []


def test_a_crash_between_bytes_and_row_leaves_an_orphan_the_sweep_removes(store):
    kept = store.create(ALICE, "kept.txt", "batch", [b"kept"])
    writer = store.storage.writer("ab/file-orphan")  # bytes committed, then the process died
    writer.write(b"orphan")
    writer.commit()
    store.storage.writer("ab/file-never").write(b"half")  # died mid-write: a .part file
    assert store.sweep() == 0  # young leftovers may belong to an upload in flight
    assert store.sweep(orphan_age_s=-1) == 2
    assert blobs(store) == [kept.storage_key] and not list(store.storage.tmp.iterdir())


def test_expired_files_are_hidden_then_swept(store):
    soon = store.create(ALICE, "a.txt", "batch", [b"a"], expires_at=utcnow() - timedelta(seconds=1))
    with pytest.raises(NotFound):
        store.get(soon.id)
    assert store.sweep() == 1 and blobs(store) == []


def test_owners_see_their_own_files_and_admins_all(store):
    a = store.create(ALICE, "a.txt", "batch", [b"a"])
    b = store.create(BOB, "b.txt", "vision", [b"b"])
    anon = store.create(Owner(None), "c.txt", "batch", [b"c"])
    with pytest.raises(NotFound):
        store.get(a.id, BOB.key_id)
    with pytest.raises(NotFound):
        store.delete(a.id, BOB.key_id)

    def ids(owner, **kw):
        query = {"purpose": None, "after": None, "limit": 10, "newest_first": False, **kw}
        return [r.id for r in store.page(owner, **query)]

    assert ids(1) == [a.id] and ids(2) == [b.id] and ids(None) == [anon.id]
    assert ids(ANY_OWNER) == [a.id, b.id, anon.id]
    assert ids(ANY_OWNER, purpose="batch") == [a.id, anon.id]
    assert ids(ANY_OWNER, after=a) == [b.id, anon.id]
    assert ids(ANY_OWNER, after=anon, newest_first=True) == [b.id, a.id]
    store.delete(a.id, 1)
    assert ids(ANY_OWNER) == [b.id, anon.id] and a.storage_key not in blobs(store)


def test_reading_bytes_that_are_gone_fails_at_once(store):
    record = store.create(ALICE, "a.txt", "batch", [b"a"])
    store.storage.delete(record.storage_key)
    with pytest.raises(FileNotFoundError):
        store.read(record)


def test_storage_keys_stay_inside_the_storage(store):
    for key in ("../outside", ".tmp/x", "/etc/passwd"):
        with pytest.raises(ValueError):
            store.storage.writer(key)


@pytest.mark.parametrize(
    ("name", "clean"),
    [("a.txt", "a.txt"), ("dir/b.txt", "b.txt"), ("C:\\x\\c.txt", "c.txt"), ("", "file"),
     ("x" * 300, "x" * 255)],
)  # fmt: skip
def test_client_file_names_are_cut_to_their_last_part(name, clean):
    assert clean_filename(name) == clean
