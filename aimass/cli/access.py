"""``aimass keys ...``, ``aimass usage`` and ``aimass audit``: work on the database directly.

No server is needed; a running server picks up key changes within seconds. Every key command
is written to the audit log with the actor ``cli:<os user>``; ``run_audited`` does the same for
the model commands in ``aimass.cli.main``.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from datetime import date
from typing import TypeVar

import typer

from aimass.access import audit as auditing
from aimass.config import Settings
from aimass.errors import AimassError
from aimass.registry import audit as audit_log
from aimass.registry import keys as keystore
from aimass.registry.usage import query_usage

keys_app = typer.Typer(
    help="Create, list, update, rotate and revoke API keys.", no_args_is_help=True
)

T = TypeVar("T")


def _url() -> str:
    return Settings().resolved_database_url


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"


def audited_call(url: str, action: str, target: str, fn: Callable[[], T]) -> T:
    """Run a registry change audited as ``cli:<os user>`` from ``cli``; the error propagates
    (``serve`` turns it into its own exit)."""
    with auditing.audited(url, actor=_actor(), source="cli", action=action, target=target):
        return fn()


def run_audited(action: str, target: str, fn: Callable[[], T]) -> T:
    """``audited_call`` for a command: an ``AimassError`` becomes ``error: ...`` and exit 1.

    Model and key commands write the registry directly (no server, so no HTTP audit), which
    is why each one audits itself here."""
    try:
        return audited_call(_url(), action, target, fn)
    except AimassError as err:
        typer.echo(f"error: {err.message}", err=True)
        raise typer.Exit(1) from None


def record_cli_action(url: str, action: str, target: str, result: str) -> None:
    """Append one CLI action (actor ``cli:<os user>``, source ``cli``) to the audit log."""
    auditing.record(url, actor=_actor(), source="cli", action=action, target=target, result=result)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def _describe(info: keystore.KeyInfo) -> str:
    d = info.public_dict()
    models = d["models"] if d["models"] == "all" else ",".join(d["models"])
    limits = [f"{f}={d[f]}" for f in ("rpm", "tpm") if d[f]]
    if d["budget_tokens"]:
        limits.append(f"budget={d['budget_tokens']}/{d['budget_period']}")
    return (
        f"{d['name']}\tid={d['id']}\t{'admin' if d['admin'] else 'user'}\tmodels={models}\t"
        f"{' '.join(limits) or 'no limits'}\t{d['state']}\texpires={d['expires_at'] or 'never'}"
    )


@keys_app.command("create")
def create(
    name: str = typer.Option(..., "--name", help="Unique name of the key."),
    models: str = typer.Option("all", "--models", help="Comma-separated model names, or all."),
    admin: bool = typer.Option(False, "--admin", help="May manage models and keys."),
    rpm: int | None = typer.Option(None, "--rpm", help="Requests per minute."),
    tpm: int | None = typer.Option(None, "--tpm", help="Tokens per minute."),
    budget_tokens: int | None = typer.Option(None, "--budget-tokens", help="Tokens per period."),
    period: str | None = typer.Option(None, "--period", help="Budget period: day or month."),
    expires: str | None = typer.Option(None, "--expires", help="Lifetime, e.g. 30d, 12h."),
) -> None:
    """Create a key and print it once, alone on the last line (only its hash is stored)."""

    def make() -> tuple[keystore.KeyInfo, str]:
        return keystore.create_key(
            _url(),
            name,
            models=keystore.parse_models(models),
            admin=admin,
            rpm=rpm,
            tpm=tpm,
            budget_tokens=budget_tokens,
            budget_period=period,
            expires_in=keystore.parse_duration(expires) if expires else None,
        )

    info, key = run_audited("key.create", name, make)
    typer.echo(_describe(info))
    typer.echo("Store this key now; it cannot be shown again:")
    typer.echo(key)


@keys_app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="One JSON array.")) -> None:
    """Every key with its scope, limits and state (never the key itself)."""
    infos = keystore.list_keys(_url())
    if as_json:
        typer.echo(json.dumps([k.public_dict() for k in infos], indent=2))
        return
    for info in infos:
        typer.echo(_describe(info))


@keys_app.command("update")
def update(
    name: str = typer.Argument(..., help="Key to change."),
    models: str | None = typer.Option(None, "--models", help="Comma-separated names, or all."),
    rpm: int | None = typer.Option(None, "--rpm", help="Requests per minute; 0 removes it."),
    tpm: int | None = typer.Option(None, "--tpm", help="Tokens per minute; 0 removes it."),
    budget_tokens: int | None = typer.Option(None, "--budget-tokens", help="0 removes it."),
    period: str | None = typer.Option(None, "--period", help="Budget period: day or month."),
    expires: str | None = typer.Option(None, "--expires", help="New lifetime from now."),
) -> None:
    """Change scope or limits; a running server applies the change within seconds."""
    changes: dict[str, object] = {}
    try:
        if models is not None:
            changes["models"] = keystore.parse_models(models)
        if expires is not None:
            changes["expires_in"] = keystore.parse_duration(expires)
    except AimassError as err:
        raise _fail(err.message) from None
    for field, value in (("rpm", rpm), ("tpm", tpm), ("budget_tokens", budget_tokens)):
        if value is not None:
            changes[field] = value or None
    if period is not None:
        changes["budget_period"] = period
    if not changes:
        raise _fail("nothing to change: give --models, --rpm, --tpm, --budget-tokens, --expires")
    info = run_audited("key.update", name, lambda: keystore.update_key(_url(), name, **changes))
    typer.echo(_describe(info))


@keys_app.command("revoke")
def revoke(name: str = typer.Argument(..., help="Key to revoke.")) -> None:
    """Revoke a key; a running server refuses it within seconds."""
    info = run_audited("key.revoke", name, lambda: keystore.revoke_key(_url(), name))
    typer.echo(_describe(info))


@keys_app.command("rotate")
def rotate(name: str = typer.Argument(..., help="Key to rotate.")) -> None:
    """Give a key a new secret (printed once, last line); the old one stops working."""
    info, key = run_audited("key.rotate", name, lambda: keystore.rotate_key(_url(), name))
    typer.echo(_describe(info))
    typer.echo("Store this key now; it cannot be shown again:")
    typer.echo(key)


def usage(
    key: str | None = typer.Option(None, "--key", help="Only this key's usage."),
    model: str | None = typer.Option(None, "--model", help="Only this model."),
    since: str | None = typer.Option(None, "--since", help="First day, YYYY-MM-DD."),
    until: str | None = typer.Option(None, "--until", help="Last day, YYYY-MM-DD."),
    as_json: bool = typer.Option(False, "--json", help="One JSON array."),
) -> None:
    """Requests, tokens and errors per key, model and UTC day (as written by the server)."""
    for value in (since, until):
        try:
            date.fromisoformat(value) if value else None
        except ValueError:
            raise _fail(f"--since/--until must be dates like 2025-01-31, got {value!r}") from None
    rows = query_usage(_url(), key_name=key, model=model, since=since, until=until)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo("date\tkey\tmodel\trequests\tprompt_tokens\tcompletion_tokens\terrors")
    for r in rows:
        typer.echo(
            f"{r['date']}\t{r['key']}\t{r['model']}\t{r['requests']}\t{r['prompt_tokens']}\t"
            f"{r['completion_tokens']}\t{r['errors']}"
        )


def audit(
    limit: int = typer.Option(100, "--limit", help="Newest N entries."),
    actor: str | None = typer.Option(None, "--actor", help="Only this actor."),
    action: str | None = typer.Option(None, "--action", help="Only this action."),
    as_json: bool = typer.Option(False, "--json", help="One JSON array."),
) -> None:
    """Administrative actions, newest first: when, who, from where, what, on what, result."""
    rows = audit_log.entries(_url(), limit=limit, actor=actor, action=action)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        typer.echo(
            f"{r['at']}\t{r['actor']}\t{r['source']}\t{r['action']}\t{r['target']}\t{r['result']}"
        )


def register(app: typer.Typer) -> None:
    """Add ``keys``, ``usage`` and ``audit`` to the main CLI."""
    app.add_typer(keys_app, name="keys")
    app.command("usage")(usage)
    app.command("audit")(audit)
