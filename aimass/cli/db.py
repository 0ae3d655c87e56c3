"""``aimass db``: the registry database's schema revision, and upgrading it on demand.

Every command and the server upgrade the schema on first use anyway; ``aimass db upgrade`` does
it as a deliberate step (after a backup, before starting servers on a shared PostgreSQL), and
``aimass db current`` says where a database stands without changing it.
"""

from __future__ import annotations

from pathlib import Path

import typer

from aimass.config import Settings
from aimass.errors import AimassError

db_app = typer.Typer(help="The registry database's schema.", no_args_is_help=True)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


@db_app.command()
def upgrade() -> None:
    """Migrate the registry database to this version's newest schema revision."""
    from aimass.registry import migrate
    from aimass.registry.db import create_registry_engine

    settings = Settings()
    engine = create_registry_engine(settings.resolved_database_url)
    try:
        done = migrate.upgrade(engine, settings.migration_lock_timeout_s)
    except AimassError as exc:
        _fail(exc.message)
    finally:
        engine.dispose()
    where = engine.url.render_as_string(hide_password=True)
    if not done.changed:
        typer.echo(f"{where}: already at revision {done.after} (newest)")
        return
    before = done.before or "none"
    if done.stamped:
        before = "none (tables from before migrations: stamped at the baseline)"
    typer.echo(f"{where}: upgraded from revision {before} to {done.after}")


@db_app.command()
def current() -> None:
    """Show the registry database's schema revision and whether it is the newest; change nothing."""
    from aimass.registry import migrate
    from aimass.registry.db import create_registry_engine

    url = Settings().resolved_database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        typer.echo(f"{url}: no database yet (the first command or server start creates it)")
        return
    engine = create_registry_engine(url)
    try:
        now = migrate.status(engine)
    except AimassError as exc:
        _fail(exc.message)
    finally:
        engine.dispose()
    where = engine.url.render_as_string(hide_password=True)
    if now.up_to_date:
        typer.echo(f"{where}: revision {now.current} (newest)")
    elif now.legacy:
        typer.echo(
            f"{where}: no revision (tables from before migrations); `aimass db upgrade` stamps "
            f"them at the baseline and upgrades to {now.head}"
        )
    else:
        typer.echo(
            f"{where}: revision {now.current or 'none (empty)'}; `aimass db upgrade` (or the "
            f"next start) upgrades it to {now.head}"
        )
