"""The registry's schema comes from Alembic migrations: on SQLite, from an empty file and from
an install made before migrations existed (``tests/fixtures/registry_schema_v0.sql``)."""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import closing

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from aimass.registry import audit, keys, migrate, models, usage
from aimass.registry.db import create_registry_engine, get_sessionmaker
from aimass.registry.tables import Base
from tests.fixtures.registry_v0 import (
    ALICE_KEY,
    OPS_KEY,
    TABLES,
    schema,
    v0_rows,
    v0_schema,
    write_v0,
)


def url_of(path) -> str:
    return f"sqlite:///{path}"


def revision(path) -> str | None:
    with closing(sqlite3.connect(path)) as conn:
        if not conn.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'alembic_version'"
        ).fetchall():
            return None
        return conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]


def test_the_baseline_builds_exactly_the_schema_create_all_made(tmp_path):
    engine = create_registry_engine(url_of(tmp_path / "new.db"))
    with engine.begin() as conn:
        command.upgrade(migrate.alembic_config(conn), migrate.BASELINE)
    engine.dispose()
    with closing(sqlite3.connect(tmp_path / "new.db")) as conn:
        built = schema(conn)
    assert built.pop("alembic_version").startswith("CREATE TABLE alembic_version")
    assert built == v0_schema()


def test_first_use_of_an_empty_database_migrates_it_to_the_newest_revision(tmp_path):
    url = url_of(tmp_path / "new.db")
    keys.create_key(url, "first")
    assert revision(tmp_path / "new.db") == migrate.head()
    engine = create_registry_engine(url)
    assert migrate.status(engine) == migrate.Status(
        current=migrate.head(), head=migrate.head(), legacy=False
    )
    assert migrate.upgrade(engine, 5) == migrate.Upgrade(
        migrate.head(), migrate.head(), stamped=False
    )
    engine.dispose()


def test_the_tables_match_what_the_migrations_build(tmp_path):
    """A table, column, index or constraint changed without a migration fails here."""
    engine = create_registry_engine(url_of(tmp_path / "new.db"))
    migrate.upgrade(engine, 5)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        assert set(inspect(conn).get_table_names()) == {*Base.metadata.tables, "alembic_version"}
    engine.dispose()


def test_an_old_install_is_stamped_at_the_baseline_and_keeps_every_row(tmp_path):
    db = write_v0(tmp_path / "old.db", tmp_path / "models")
    before = v0_rows(db)
    assert all(before[t] for t in TABLES), "the fixture has rows in every table"
    engine = create_registry_engine(url_of(db))
    assert migrate.status(engine) == migrate.Status(current=None, head=migrate.head(), legacy=True)

    done = migrate.upgrade(engine, 5)

    assert done == migrate.Upgrade(before=None, after=migrate.head(), stamped=True)
    assert revision(db) == migrate.head()
    assert v0_rows(db) == before
    engine.dispose()


def test_the_registry_reads_and_writes_an_upgraded_old_install(tmp_path):
    url = url_of(write_v0(tmp_path / "old.db", tmp_path / "models"))
    entries = {(e.spec.name, e.spec.version): e for e in models.list_models(url)}
    assert entries["fixture-add", 1].desired == "loaded"
    assert entries["fixture-add", 2].notes == {"why": "a second version"}
    assert entries["fixture-scorer", 1].last_error.startswith("source ")
    assert keys.find_by_public_id(url, keys.public_id_of(OPS_KEY)).admin
    alice = keys.get_key(url, "alice")
    assert alice.secret_hash == keys.hash_key(ALICE_KEY) and alice.models == {"fixture-add"}
    assert keys.get_key(url, "old-batch-job").state() == "revoked"
    assert {(r["key"], r["date"], r["requests"]) for r in usage.query_usage(url)} == {
        ("alice", "2025-11-28", 12),
        ("alice", "2025-11-29", 3),
        ("old-batch-job", "2025-11-29", 7),
        ("(anonymous)", "2025-11-29", 1),
    }
    assert [e["action"] for e in audit.entries(url)] == [
        "key.revoke",
        "model.load",
        "key.create",
        "model.register",
    ]
    usage.write_usage(url, {(alice.id, "alice", "fixture-add", "2025-11-29"): usage.Counts(2)})
    assert usage.query_usage(url, key_name="alice", since="2025-11-29")[0]["requests"] == 5
    keys.create_key(url, "after-upgrade")
    assert keys.get_key(url, "after-upgrade").id == 4


def test_a_revision_from_a_newer_version_is_a_clear_error(tmp_path):
    db = tmp_path / "new.db"
    engine = create_registry_engine(url_of(db))
    migrate.upgrade(engine, 5)
    engine.dispose()
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE alembic_version SET version_num = 'f00d'")
    with pytest.raises(migrate.SchemaError) as err:
        models.list_models(url_of(db))
    assert err.value.status == 503
    assert "revision 'f00d'" in err.value.message and "newer AI Mass" in err.value.message
    assert revision(db) == "f00d", "nothing was changed"


def test_some_registry_tables_without_a_revision_are_refused(tmp_path):
    db = tmp_path / "odd.db"
    with closing(sqlite3.connect(db)) as conn:
        conn.execute(v0_schema()["models"])
    with pytest.raises(migrate.SchemaError) as err:
        get_sessionmaker(url_of(db))
    assert "not api_keys, audit_log, usage_days" in err.value.message
    assert revision(db) is None


def test_a_migration_is_one_transaction_on_sqlite(tmp_path):
    """DDL under the migration lock rolls back with everything else (pysqlite would not)."""
    engine = create_registry_engine(url_of(tmp_path / "tx.db"))
    with pytest.raises(RuntimeError), migrate._exclusive(engine, 5) as conn:
        conn.exec_driver_sql("CREATE TABLE half_done (x INTEGER)")
        raise RuntimeError("a migration fails half-way")
    with closing(sqlite3.connect(tmp_path / "tx.db")) as conn:
        assert schema(conn) == {}
    engine.dispose()


def test_waiting_for_another_migration_gives_up_naming_the_setting(tmp_path, monkeypatch):
    db = tmp_path / "busy.db"
    monkeypatch.setenv("AIMASS_MIGRATION_LOCK_TIMEOUT_S", "0.3")
    with closing(sqlite3.connect(db, isolation_level=None)) as other:
        other.execute("PRAGMA journal_mode=WAL")  # what a migrating process does first
        other.execute("BEGIN IMMEDIATE")  # then it holds the write lock while it migrates
        start = time.monotonic()
        with pytest.raises(migrate.SchemaError) as err:
            get_sessionmaker(url_of(db))
        waited = time.monotonic() - start
        other.execute("ROLLBACK")
    assert 0.3 <= waited < 5
    assert "AIMASS_MIGRATION_LOCK_TIMEOUT_S" in err.value.message and "0.3 s" in err.value.message
    keys.create_key(url_of(db), "later")  # the lock is free: the same URL now migrates
    assert revision(db) == migrate.head()


def test_a_non_wal_file_locked_by_another_process_is_waited_for(tmp_path):
    """SQLite refuses the switch to WAL at once while another connection holds the write lock
    of a rollback-journal file (a database restored from a dump): the registry waits instead."""
    db = write_v0(tmp_path / "restored.db", tmp_path / "models")
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.3, lambda: other.execute("ROLLBACK"))
    release.start()
    start = time.monotonic()
    try:
        assert len(models.list_models(url_of(db))) == 3
    finally:
        release.join()
        other.close()
    assert time.monotonic() - start >= 0.3
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
