"""Database access: one SQLAlchemy engine per URL, its schema migrated on first use.

SQLite (a file under ``AIMASS_HOME``) by default; any SQLAlchemy URL (PostgreSQL) otherwise.
Several processes (the server and the CLI) share the file, so SQLite runs in WAL mode with a
busy timeout instead of failing on a concurrent write. The first use of a URL in a process
brings its schema to the newest revision (``registry.migrate``), so a server, and every CLI
command, runs on the tables it was written for.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from aimass.config import Settings
from aimass.registry import migrate

_BUSY_TIMEOUT_S = 10.0
_engines: dict[str, tuple[Engine, sessionmaker[Session]]] = {}
_lock = threading.Lock()


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    _use_wal(cur)
    cur.execute(f"PRAGMA busy_timeout={int(_BUSY_TIMEOUT_S * 1000)}")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _use_wal(cur: sqlite3.Cursor) -> None:
    """Put the file in WAL mode (it stays so), waiting out other processes doing the same.

    Switching needs the file to itself, and SQLite refuses at once, busy timeout or not, while
    another connection holds its write lock: several processes opening a non-WAL file together
    (one restored from a ``.dump``, say) would fail. So the switch is retried within the timeout.
    """
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def create_registry_engine(url: str) -> Engine:
    """An engine for ``url`` as the registry uses it, its schema untouched."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": _BUSY_TIMEOUT_S})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def get_sessionmaker(url: str) -> sessionmaker[Session]:
    """Sessions on ``url``; the first call in a process migrates its schema to the newest."""
    with _lock:
        if url not in _engines:
            engine = create_registry_engine(url)
            try:
                migrate.upgrade(engine, Settings().migration_lock_timeout_s)
            except BaseException:
                engine.dispose()
                raise
            _engines[url] = (engine, sessionmaker(engine, expire_on_commit=False))
        return _engines[url][1]


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A transaction: committed on success, rolled back on error."""
    session = get_sessionmaker(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
