"""Database access: one SQLAlchemy engine per URL, tables created on first use.

SQLite (a file under ``AIMASS_HOME``) by default; any SQLAlchemy URL (PostgreSQL) otherwise.
Several processes (the server and the CLI) share the file, so SQLite runs in WAL mode with a
busy timeout instead of failing on a concurrent write.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker


class Base(DeclarativeBase):
    """Declarative base of every table the registry owns."""


_engines: dict[str, tuple[Engine, sessionmaker[Session]]] = {}
_lock = threading.Lock()


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _import_tables() -> None:
    """Import every module that defines tables so ``create_all`` sees them."""
    from aimass.registry import access, models  # noqa: F401


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def get_sessionmaker(url: str) -> sessionmaker[Session]:
    with _lock:
        if url not in _engines:
            if url.startswith("sqlite:///"):
                Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
                engine = create_engine(url, connect_args={"timeout": 10})
                event.listen(engine, "connect", _sqlite_pragmas)
            else:
                engine = create_engine(url, pool_pre_ping=True)
            _import_tables()
            Base.metadata.create_all(engine)
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
