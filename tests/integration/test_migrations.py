"""Migrations against real parts: PostgreSQL from empty and from an old install, several
processes starting on one database at once, ``aimass db`` as a user runs it, a real server on an
upgraded old install, and the migrations inside a built wheel.

The PostgreSQL tests use ``test_postgres.py``'s throwaway cluster and skip, saying why, where
PostgreSQL's server binaries are missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import asdict
from pathlib import Path

import httpx
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, insert, inspect, select, text
from sqlalchemy.pool import NullPool

from aimass.registry import audit, keys, migrate, models, usage
from aimass.registry.db import create_registry_engine
from aimass.registry.tables import Base
from tests.conftest import ROOT, run_server
from tests.fixtures.registry_v0 import ALICE_KEY, OPS_KEY, TABLES, v0_rows, write_v0
from tests.integration.test_postgres import pg_url  # noqa: F401  (the PostgreSQL fixture)

BODY = {
    "inputs": [
        {"name": "a", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
        {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]},
    ]
}


@pytest.fixture
def pg_db(pg_url) -> str:  # noqa: F811  (pytest injects the imported fixture)
    """URL of a new, empty database on the test cluster."""
    name = f"m{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    return pg_url.rsplit("/", 1)[0] + f"/{name}"


def snapshot(url: str) -> dict[str, list]:
    """Everything the registry's own functions read back: models, keys, usage, audit."""
    return {
        "models": [e.as_dict() for e in models.list_models(url)],
        "keys": [asdict(k) for k in keys.list_keys(url)],
        "usage": usage.query_usage(url),
        "audit": audit.entries(url, limit=1000),
    }


def aimass(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "aimass", *args],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


# ---- PostgreSQL ---------------------------------------------------------------------------


def test_postgres_from_empty_matches_the_tables(pg_db):
    keys.create_key(pg_db, "first")
    engine = create_registry_engine(pg_db)
    assert migrate.status(engine).current == migrate.head()
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        assert set(inspect(conn).get_table_names()) == {*Base.metadata.tables, "alembic_version"}
    engine.dispose()


def old_postgres_install(url: str, v0_sqlite: Path) -> None:
    """``url`` as a PostgreSQL install made before migrations: the baseline's tables, no
    ``alembic_version``, the fixture's rows (ids and sequences as an old server leaves them)."""
    engine = create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        command.upgrade(migrate.alembic_config(conn), migrate.BASELINE)
        conn.exec_driver_sql("DROP TABLE alembic_version")
        old, new = MetaData(), MetaData()
        source = create_engine(f"sqlite:///{v0_sqlite}", poolclass=NullPool)
        old.reflect(source, only=TABLES)
        new.reflect(conn, only=TABLES)
        with source.connect() as src:
            for table in TABLES:
                rows = [dict(r._mapping) for r in src.execute(select(old.tables[table]))]
                conn.execute(insert(new.tables[table]), rows)
                sequence = f"pg_get_serial_sequence('{table}', 'id')"
                conn.execute(text(f"SELECT setval({sequence}, max(id)) FROM {table}"))
        source.dispose()
    engine.dispose()


def test_postgres_old_install_is_stamped_and_keeps_every_row(pg_db, tmp_path):
    old_postgres_install(pg_db, write_v0(tmp_path / "v0.db", tmp_path / "models"))
    engine = create_registry_engine(pg_db)
    assert migrate.status(engine) == migrate.Status(current=None, head=migrate.head(), legacy=True)

    assert migrate.upgrade(engine, 10) == migrate.Upgrade(None, migrate.head(), stamped=True)

    engine.dispose()
    sqlite_copy = f"sqlite:///{write_v0(tmp_path / 'copy.db', tmp_path / 'models')}"
    assert snapshot(pg_db) == snapshot(sqlite_copy)
    assert len(snapshot(pg_db)["audit"]) == 4
    keys.create_key(pg_db, "after-upgrade")  # the sequences carry on after the old rows
    assert keys.get_key(pg_db, "after-upgrade").id == 4


def test_postgres_newer_revision_is_a_clear_error(pg_db):
    engine = create_registry_engine(pg_db)
    migrate.upgrade(engine, 10)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'f00d'")
    with pytest.raises(migrate.SchemaError, match=r"revision 'f00d'.*newer AI Mass"):
        models.list_models(pg_db)
    engine.dispose()


def test_postgres_waits_for_another_migration_then_gives_up_naming_the_setting(pg_db):
    holder = create_engine(pg_db, poolclass=NullPool)
    engine = create_registry_engine(pg_db)
    with holder.connect() as other:
        other.execute(text(f"SELECT pg_advisory_lock({migrate._PG_LOCK_KEY})"))
        start = time.monotonic()
        with pytest.raises(migrate.SchemaError, match="AIMASS_MIGRATION_LOCK_TIMEOUT_S"):
            migrate.upgrade(engine, 0.3)
        assert 0.3 <= time.monotonic() - start < 5
        other.execute(text(f"SELECT pg_advisory_unlock({migrate._PG_LOCK_KEY})"))
    assert migrate.status(engine).current is None, "nothing was half-done"
    assert migrate.upgrade(engine, 10).after == migrate.head()
    engine.dispose()
    holder.dispose()


# ---- several processes at once ------------------------------------------------------------

STARTER = """
import logging, sys, time
from pathlib import Path
from aimass.registry import keys
logging.basicConfig(level=logging.WARNING, format="%(name)s %(message)s")
logging.getLogger("aimass.registry").setLevel(logging.INFO)
url, gate, name = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
(gate / name).touch()
while not (gate / "go").exists():
    time.sleep(0.002)
keys.create_key(url, name)
"""


def start_together(url: str, gate: Path, processes: int = 6) -> list[subprocess.CompletedProcess]:
    """``processes`` Python processes, imports done, all first using ``url`` at one instant."""
    gate.mkdir()
    names = [f"starter-{i}" for i in range(processes)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", STARTER, url, str(gate), name],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in names
    ]
    deadline = time.monotonic() + 60
    while not all((gate / n).exists() for n in names) and time.monotonic() < deadline:
        time.sleep(0.01)
    (gate / "go").touch()
    return [subprocess.CompletedProcess(p.args, p.wait(60), p.stdout.read()) for p in procs]


@pytest.mark.parametrize("database", ["sqlite-empty", "sqlite-old", "postgres-empty"])
def test_processes_starting_at_once_migrate_once_and_all_work(database, tmp_path, request):
    if database == "postgres-empty":
        url = request.getfixturevalue("pg_db")
    elif database == "sqlite-old":
        url = f"sqlite:///{write_v0(tmp_path / 'old.db', tmp_path / 'models')}"
    else:
        url = f"sqlite:///{tmp_path / 'new.db'}"

    done = start_together(url, tmp_path / "gate")

    assert [p.returncode for p in done] == [0] * len(done), "\n".join(p.stdout for p in done)
    migrated = [p for p in done if f"schema (none) -> {migrate.head()}" in p.stdout]
    assert len(migrated) == 1, "\n".join(p.stdout for p in done)
    engine = create_registry_engine(url)
    assert migrate.status(engine).current == migrate.head()
    engine.dispose()
    names = {k.name for k in keys.list_keys(url)}
    assert {f"starter-{i}" for i in range(len(done))} <= names


# ---- the command line ---------------------------------------------------------------------


def test_aimass_db_upgrade_and_current_on_an_old_install(tmp_path):
    """Then a newer version's revision: each command, and `aimass serve`, says so in one line."""
    db = write_v0(tmp_path / "home" / "aimass.db", tmp_path / "models")
    before = v0_rows(db)
    env = {"AIMASS_HOME": str(tmp_path / "home")}

    out = aimass(env, "db", "current")
    assert out.returncode == 0 and "no revision (tables from before migrations)" in out.stdout
    out = aimass(env, "db", "upgrade")
    assert out.returncode == 0, out.stderr
    stamped = "none (tables from before migrations: stamped at the baseline)"
    assert f"upgraded from revision {stamped} to {migrate.head()}" in out.stdout
    assert aimass(env, "db", "current").stdout.endswith(f"revision {migrate.head()} (newest)\n")
    assert "already at revision" in aimass(env, "db", "upgrade").stdout
    assert v0_rows(db) == before

    with create_registry_engine(f"sqlite:///{db}").begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'f00d'")
    for args in (["db", "upgrade"], ["db", "current"], ["serve", "--no-builtins", "--port", "1"]):
        out = aimass(env, *args)
        assert out.returncode == 1 and out.stdout == "", out.stderr
        assert out.stderr.startswith("error: ") and "newer AI Mass" in out.stderr
        assert "Traceback" not in out.stderr


def test_aimass_db_on_postgres_and_on_no_database_yet(pg_db, tmp_path):
    out = aimass({"AIMASS_DATABASE_URL": pg_db}, "db", "current")
    assert "revision none (empty)" in out.stdout
    out = aimass({"AIMASS_DATABASE_URL": pg_db}, "db", "upgrade")
    assert out.returncode == 0 and f"upgraded from revision none to {migrate.head()}" in out.stdout
    out = aimass({"AIMASS_HOME": str(tmp_path / "nothing")}, "db", "current")
    assert out.returncode == 0 and "no database yet" in out.stdout
    assert not (tmp_path / "nothing" / "aimass.db").exists(), "looking created nothing"


# ---- a real server ------------------------------------------------------------------------


def test_the_server_starts_on_an_old_install_and_serves_it(tmp_path):
    """No `aimass db upgrade` first: the server migrates at start, then serves the old models
    to the old keys and adds to the old usage."""
    db = write_v0(tmp_path / "home" / "aimass.db", tmp_path / "models")
    old = v0_rows(db)
    env = {"AIMASS_USAGE_FLUSH_INTERVAL_S": "0.2"}
    with run_server(tmp_path, extra_args=["--require-auth"], env=env) as server:
        infer = f"{server}/v2/models/fixture-add/infer"
        assert httpx.post(infer, json=BODY).status_code == 401
        r = httpx.post(infer, json=BODY, headers={"Authorization": f"Bearer {ALICE_KEY}"})
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["data"] == [2, 3, 4, 5]
        ops = {"Authorization": f"Bearer {OPS_KEY}"}
        listed = httpx.get(f"{server}/v1/admin/models", headers=ops).json()["data"]
        assert {(m["name"], m["version"], m["desired"]) for m in listed} == {
            ("fixture-add", 1, "loaded"),
            ("fixture-add", 2, "unloaded"),
            ("fixture-scorer", 1, "unloaded"),
        }
        assert next(m for m in listed if m["version"] == 2)["notes"] == {"why": "a second version"}
        deadline = time.monotonic() + 10
        while True:
            rows = httpx.get(f"{server}/v1/usage?key=alice", headers=ops).json()["data"]
            if len(rows) == 3 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert [(r["date"], r["requests"]) for r in rows] == [
            (usage.today(), 1),
            ("2025-11-29", 3),
            ("2025-11-28", 12),
        ]
    now = v0_rows(db)
    assert now["api_keys"] == old["api_keys"]
    assert set(old["usage_days"]) <= set(now["usage_days"])
    assert now["audit_log"][: len(old["audit_log"])] == old["audit_log"]
    assert [m[:4] for m in now["models"]] == [m[:4] for m in old["models"]]


# ---- packaging ----------------------------------------------------------------------------


def test_a_built_wheel_carries_the_migrations(tmp_path):
    """A non-editable install migrates too: the revisions and env.py are package data."""
    src = tmp_path / "src"
    shutil.copytree(ROOT / "aimass", src / "aimass", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist")]
    subprocess.run([*build, str(src)], check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("aimass-*.whl"))
    target = tmp_path / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True, timeout=300
    )
    check = (
        "import aimass, sys; from aimass.registry import db, migrate, models; "
        "url = 'sqlite:///' + sys.argv[1]; models.list_models(url); "
        "print(aimass.__file__, migrate.status(db.create_registry_engine(url)).current)"
    )
    out = subprocess.run(
        [sys.executable, "-c", check, str(tmp_path / "w.db")],
        env={**os.environ, "PYTHONPATH": str(target)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(target / "aimass" / "__init__.py"), migrate.head()]
