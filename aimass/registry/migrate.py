"""Schema migrations of the registry database: Alembic revisions applied from code, under a lock.

Every process upgrades a database the first time it uses it (``db.get_sessionmaker``), and
``aimass db upgrade`` does the same on demand. The contract:

- A database already at the newest revision costs one read of ``alembic_version``, with no lock.
- Otherwise the upgrade runs in one transaction that only one process can hold: on SQLite
  ``BEGIN IMMEDIATE`` (the database's single write lock), on PostgreSQL a transaction-scoped
  advisory lock. A process that starts while another migrates waits (at most
  ``AIMASS_MIGRATION_LOCK_TIMEOUT_S``), then finds the work done. Both databases run DDL
  transactionally, so a failed migration leaves the schema as it was.
- A database made before migrations existed (the registry's tables, no ``alembic_version``) is
  stamped at the baseline revision, then upgraded: its rows are kept.
- A database at a revision this code does not know was upgraded by a newer AI Mass; that is a
  ``SchemaError`` saying so, never an attempt to migrate it.

Other databases (neither SQLite nor PostgreSQL) are migrated without a cross-process lock.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, func, inspect, select, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from aimass.errors import Unavailable

log = logging.getLogger("aimass.registry")

SCRIPTS = Path(__file__).with_name("migrations")
BASELINE = "0001"
"""The revision that creates the schema every install had before migrations."""
BASELINE_TABLES = frozenset({"models", "api_keys", "usage_days", "audit_log"})
_PG_LOCK_KEY = 0x61696D617373
"""Advisory lock id of the migration: "aimass" in ASCII (PostgreSQL takes a signed 64-bit id)."""


class SchemaError(Unavailable):
    """The registry database cannot be brought to the schema this code needs."""

    code = "registry_schema"


@dataclass(frozen=True)
class Status:
    """Where a database stands: its revision (None: none recorded) and the newest one known."""

    current: str | None
    head: str
    legacy: bool
    """Registry tables without ``alembic_version``: made before migrations existed."""

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


@dataclass(frozen=True)
class Upgrade:
    """What an upgrade did: the revision before (None: none recorded) and after."""

    before: str | None
    after: str
    stamped: bool
    """The database predated migrations and was stamped at the baseline first."""

    @property
    def changed(self) -> bool:
        return self.before != self.after


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration without an ``alembic.ini``: the packaged scripts and a connection."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    config.attributes["connection"] = connection
    return config


@cache
def scripts() -> ScriptDirectory:
    """The packaged revisions (read once per process; they do not change while it runs)."""
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    """The newest revision this code knows."""
    return scripts().get_current_head()


def status(engine: Engine) -> Status:
    """The database's revision, read without a lock; a revision from a newer AI Mass is an error."""
    with engine.connect() as conn:
        return _status(conn)


def upgrade(engine: Engine, lock_timeout_s: float) -> Upgrade:
    """Bring the database to the newest revision (see the module docstring for the contract)."""
    now = status(engine)
    if now.up_to_date:
        return Upgrade(before=now.current, after=now.head, stamped=False)
    try:
        with _exclusive(engine, lock_timeout_s) as conn:
            return _upgrade(conn)
    except OperationalError as exc:
        if not _is_lock_timeout(exc):
            raise
        raise SchemaError(
            f"gave up after {lock_timeout_s:g} s waiting for another process to finish migrating "
            f"the registry database {_safe(engine.url)}; retry, or raise "
            "AIMASS_MIGRATION_LOCK_TIMEOUT_S"
        ) from exc


def _status(conn: Connection) -> Status:
    current = MigrationContext.configure(conn).get_current_revision()
    newest = head()
    if current is not None and current not in _known():
        raise SchemaError(
            f"the registry database {_safe(conn.engine.url)} is at schema revision {current!r}, "
            f"which this version of AI Mass does not know (its newest is {newest!r}): a newer "
            "AI Mass has upgraded it. Run that version, or restore a backup of the database "
            "taken before the upgrade"
        )
    legacy = current is None and bool(BASELINE_TABLES & set(inspect(conn).get_table_names()))
    return Status(current=current, head=newest, legacy=legacy)


def _known() -> set[str]:
    return {script.revision for script in scripts().walk_revisions()}


def _upgrade(conn: Connection) -> Upgrade:
    """Runs holding the lock: the state may have changed since the unlocked look."""
    before = _status(conn)
    config = alembic_config(conn)
    if before.legacy:
        missing = BASELINE_TABLES - set(inspect(conn).get_table_names())
        if missing:
            raise SchemaError(
                f"the registry database {_safe(conn.engine.url)} has some of the registry's "
                f"tables but not {', '.join(sorted(missing))}, and no schema revision: it was "
                "not made by AI Mass; restore it from a backup or point AIMASS_DATABASE_URL at "
                "another database"
            )
        command.stamp(config, BASELINE)
    command.upgrade(config, "head")
    after = before.head
    if before.current != after:
        log.info(
            "registry database %s: schema %s -> %s%s",
            _safe(conn.engine.url),
            before.current or "(none)",
            after,
            " (tables from before migrations, stamped at the baseline)" if before.legacy else "",
        )
    return Upgrade(before=before.current, after=after, stamped=before.legacy)


@contextmanager
def _exclusive(engine: Engine, lock_timeout_s: float) -> Iterator[Connection]:
    """A connection in a transaction that no other process's migration can hold at once."""
    dialect, database = engine.dialect.name, engine.url.database
    if dialect == "sqlite" and database not in (None, "", ":memory:"):
        locked = _sqlite_immediate_engine(engine.url, lock_timeout_s)
    elif dialect == "postgresql":
        locked = create_engine(engine.url, poolclass=NullPool)
    else:
        locked = None  # one process's in-memory SQLite, or a database without a lock used here
    try:
        with (locked or engine).begin() as conn:
            if dialect == "postgresql":
                timeout_ms = max(1, round(lock_timeout_s * 1000))  # 0 would mean "no limit"
                conn.execute(text(f"SET LOCAL lock_timeout = {timeout_ms}"))
                conn.execute(select(func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
            yield conn
    finally:
        if locked is not None:
            locked.dispose()


def _sqlite_immediate_engine(url: URL, lock_timeout_s: float) -> Engine:
    """An engine whose transactions start with ``BEGIN IMMEDIATE`` and include DDL.

    pysqlite begins transactions lazily and not before DDL; taking over BEGIN (SQLAlchemy's
    documented recipe) makes the whole migration one transaction, holding SQLite's write lock
    from the start. ``timeout`` is how long BEGIN waits for another process's lock. The file is
    already in WAL mode: the registry's engine, which looked at it first, switched it.
    """
    engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": lock_timeout_s})

    @event.listens_for(engine, "connect")
    def _autocommit_driver(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _is_lock_timeout(exc: OperationalError) -> bool:
    """SQLite's busy timeout ran out, or PostgreSQL's ``lock_timeout`` (SQLSTATE 55P03)."""
    return "database is locked" in str(exc.orig) or getattr(exc.orig, "sqlstate", "") == "55P03"


def _safe(url: URL) -> str:
    return url.render_as_string(hide_password=True)
