"""The ``aimass`` command line: serve, manage models, run inference.

Model commands work on the registry directly, whether or not a server runs; a running server
picks changes up within ``reconcile_interval_s``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from aimass.cli.db import db_app
from aimass.config import Settings
from aimass.errors import AimassError, InvalidInput

app = typer.Typer(help="AI Mass: large models as a service.", no_args_is_help=True)
models_app = typer.Typer(help="Register, list, load and unload models.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(db_app, name="db")


def _settings(**overrides: Any) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _url() -> str:
    return _settings().resolved_database_url


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to bind [default: AIMASS_HOST or 127.0.0.1].")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to bind [default: AIMASS_PORT or 8000].")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="YAML file of model specs to load.")] = None,
    no_builtins: Annotated[
        bool, typer.Option("--no-builtins", help="Skip built-in models.")
    ] = False,
    require_auth: Annotated[bool, typer.Option("--require-auth", help="Require API keys.")] = False,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Allow a public bind with no admin key.")
    ] = False,
    log_level: Annotated[
        str,
        typer.Option(
            help="Log level of the server and uvicorn: critical, error, warning, info "
            "(model loads and their times), debug, trace."
        ),
    ] = "info",
    cluster: Annotated[
        str | None,
        typer.Option(
            help="Run replicas as Ray actors on this cluster: auto, ray://HOST:PORT or "
            "HOST:PORT (needs aimass[ray]; docs/cluster.md) [default: AIMASS_CLUSTER, or "
            "local worker processes]."
        ),
    ] = None,
) -> None:
    """Start the server with the registered models (and the built-in ones)."""
    # --host/--port default to None so AIMASS_HOST/AIMASS_PORT (Settings) apply when the flags
    # are not given (_settings drops None); a flag given explicitly wins over the environment.
    import uvicorn

    from aimass.access.gate import check_startup
    from aimass.registry.db import get_sessionmaker
    from aimass.server.app import create_app
    from aimass.server.transport import GatheringHttpToolsProtocol

    settings = _settings(
        host=host,
        port=port,
        builtins=False if no_builtins else None,
        require_auth=True if require_auth else None,
        insecure=True if insecure else None,
        cluster=cluster,
    )
    _configure_logging(log_level)
    if settings.cluster and importlib.util.find_spec("ray") is None:
        _fail("--cluster (AIMASS_CLUSTER) needs Ray: pip install 'aimass[ray]'")
    try:
        get_sessionmaker(settings.resolved_database_url)  # migrates the schema: docs/database.md
        _prepare_models(settings, config)
        check_startup(settings)
    except AimassError as exc:
        _fail(exc.message)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        http=GatheringHttpToolsProtocol,
        log_level=log_level,
        access_log=_logs_access(log_level),
        timeout_graceful_shutdown=10,
    )


def _logs_access(level: str) -> bool:
    """uvicorn's access line is logged at INFO; above it the line is never shown, but uvicorn
    still formats the client address and path of every request for it."""
    import logging

    from uvicorn.config import LOG_LEVELS

    return LOG_LEVELS.get(level.lower(), logging.INFO) <= logging.INFO


def _configure_logging(level: str) -> None:
    """Show the server's own lines (model loads, built-in preparation, with their times) like
    uvicorn's, at the level ``--log-level`` names; without a handler only warnings showed."""
    import logging

    from uvicorn.config import LOG_LEVELS
    from uvicorn.logging import DefaultFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(DefaultFormatter("%(levelprefix)s %(message)s"))
    logger = logging.getLogger("aimass")
    logger.handlers[:] = [handler]
    logger.setLevel(LOG_LEVELS.get(level.lower(), logging.INFO))
    logger.propagate = False


def _prepare_models(settings: Settings, config: Path | None) -> None:
    if settings.builtins:
        from aimass.provision.builtin import register_builtins

        register_builtins(settings)
    if config is not None:
        _register_config(settings, config)


def _register_config(settings: Settings, config: Path) -> None:
    """Validate, register and mark loaded every spec of ``--config``. A version already
    registered keeps its files (its serving settings may change; other files are refused:
    versions are immutable). Each registration, and a file that cannot be read, is audited
    like ``aimass models add`` (it changes what is served)."""
    import asyncio

    from aimass.cli.access import audited_call, record_cli_action
    from aimass.provision.registration import register
    from aimass.spec import ModelSpec

    url = settings.resolved_database_url

    def read() -> list[ModelSpec]:
        if not config.exists():
            raise AimassError(f"config file {config} does not exist")
        return ModelSpec.from_yaml(config)

    try:
        specs = read()
    except Exception as exc:
        record_cli_action(url, "model.register", str(config), f"error: {_message(exc)}")
        raise
    for spec in specs:
        audited_call(
            url,
            "model.register",
            f"{spec.name}:{spec.version}",
            lambda spec=spec: asyncio.run(register(settings, spec, load=True, update=True)),
        )


def _message(exc: Exception) -> str:
    return getattr(exc, "message", None) or str(exc)


@models_app.command("add")
def models_add(
    name: str,
    runtime: Annotated[
        str, typer.Option(help="onnx | tabular | llamacpp | transformers | vision | ocr | asr")
    ],
    source: Annotated[Path, typer.Option(help="Local model file or directory.")],
    task: Annotated[str | None, typer.Option(help="Task, e.g. classification, embedding.")] = None,
    version: Annotated[int | None, typer.Option(help="Version (default: next free).")] = None,
    max_batch_size: Annotated[int | None, typer.Option()] = None,
    max_delay_ms: Annotated[float | None, typer.Option()] = None,
    max_queue: Annotated[int | None, typer.Option()] = None,
    timeout_s: Annotated[float | None, typer.Option()] = None,
    replicas: Annotated[int | None, typer.Option()] = None,
    threads: Annotated[int | None, typer.Option()] = None,
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle")] = False,
    option: Annotated[
        list[str] | None, typer.Option(help="Runtime option KEY=VALUE (JSON values allowed).")
    ] = None,
    description: Annotated[str | None, typer.Option(help="Free text shown with the model.")] = None,
    load: Annotated[bool, typer.Option("--load", help="Mark it to be loaded.")] = False,
    no_copy: Annotated[
        bool,
        typer.Option(
            "--no-copy",
            help="Serve the files where they are instead of from the registry's copy "
            "(their sha256 is still recorded and checked at every load).",
        ),
    ] = False,
    replace: Annotated[
        bool,
        typer.Option("--replace", help="Replace an existing version's files and settings."),
    ] = False,
) -> None:
    """Register a model version: checked, trial-loaded and copied into the registry first."""
    import asyncio

    from aimass.cli.access import run_audited
    from aimass.provision.registration import register
    from aimass.registry import models as registry
    from aimass.spec import ModelSpec

    settings = _settings()
    version = version or registry.next_version(settings.resolved_database_url, name)

    def add() -> Any:
        data: dict[str, Any] = {
            "name": name,
            "runtime": runtime,
            "source": str(source.resolve()),
            "version": version,
            "batching": _drop_none(max_batch_size=max_batch_size, max_delay_ms=max_delay_ms),
            "limits": _drop_none(max_queue=max_queue, timeout_s=timeout_s),
            "trust_pickle": trust_pickle,
            "options": _parse_options(option or []),
            **_drop_none(task=task, replicas=replicas, threads=threads, description=description),
        }
        spec = ModelSpec.parse(data)
        return asyncio.run(register(settings, spec, load=load, replace=replace, copy=not no_copy))

    done = run_audited("model.register", f"{name}:{version}", add)
    spec = done.entry.spec
    typer.echo(f"registered {spec.name} version {spec.version} ({done.entry.desired})")
    typer.echo(f"files {done.how}: {spec.source}")


def _target(name: str, version: int | None) -> str:
    """The audit target of a model command: ``name`` (all/newest) or ``name:version``."""
    return name if version is None else f"{name}:{version}"


def _drop_none(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _parse_options(items: list[str], flag: str = "--option") -> dict[str, Any]:
    """``KEY=VALUE`` pairs; a value is read as JSON when it parses, else kept as a string."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidInput(f"{flag} must be KEY=VALUE, got {item!r}")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return options


@models_app.command("list")
def models_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every registered version with its desired and observed state, and its share (WEIGHT,
    percent) of the requests that name no version when the model has a serving route."""
    from aimass.registry import models as registry
    from aimass.registry import routes as routing

    entries = registry.list_models(_url())
    routes = routing.current_routes(_url())

    def weight(e: registry.ModelEntry) -> int | None:
        route = routes.get(e.spec.name)
        return None if route is None else route.weights.get(e.spec.version, 0)

    if as_json:
        rows = [{**e.as_dict(), "weight": weight(e)} for e in entries]
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    typer.echo(
        f"{'NAME':<28}{'VERSION':>8}  {'RUNTIME':<13}{'DESIRED':<10}{'STATE':<10}"
        f"{'WEIGHT':>6}  ERROR"
    )
    for e in entries:
        s, w = e.spec, weight(e)
        typer.echo(
            f"{s.name:<28}{s.version:>8}  {s.runtime:<13}{e.desired:<10}{e.state:<10}"
            f"{'-' if w is None else f'{w}%':>6}  {e.last_error or ''}"
        )


@models_app.command("show")
def models_show(name: str, version: Annotated[int | None, typer.Option()] = None) -> None:
    """One version's spec and state, as JSON."""
    from aimass.registry import models as registry

    try:
        entry = registry.get_model(_url(), name, version)
    except AimassError as exc:
        _fail(exc.message)
    typer.echo(json.dumps(entry.as_dict(), indent=2, default=str))


@models_app.command("load")
def models_load(name: str, version: Annotated[int | None, typer.Option()] = None) -> None:
    """Mark a version (default: newest) to be loaded."""
    _set_desired(name, version, "loaded")


@models_app.command("unload")
def models_unload(name: str, version: Annotated[int | None, typer.Option()] = None) -> None:
    """Mark a version (default: all) to be unloaded."""
    _set_desired(name, version, "unloaded")


def _set_desired(name: str, version: int | None, desired: str) -> None:
    from aimass.cli.access import run_audited
    from aimass.registry import models as registry

    action = "model.load" if desired == "loaded" else "model.unload"
    versions = run_audited(
        action,
        _target(name, version),
        lambda: registry.set_desired(_url(), name, version, desired),
    )
    typer.echo(f"{name} version(s) {', '.join(map(str, versions))}: {desired}")


@models_app.command("promote")
def models_promote(name: str, version: int) -> None:
    """Make VERSION serve every request that names no version (it is loaded if it is not);
    the route before it is kept, for `aimass models rollback`."""
    from aimass.cli.access import run_audited
    from aimass.registry import routes as routing

    route = run_audited(
        "model.promote", _target(name, version), lambda: routing.promote(_url(), name, version)
    )
    typer.echo(f"{name}: version {version} serves 100% (route {route.describe()})")


@models_app.command("route")
def models_route(
    name: str,
    weights: Annotated[
        str | None,
        typer.Option(
            help="VERSION:PERCENT pairs that sum to 100, e.g. 3:90,4:10 (a 10% canary of "
            "version 4). Without it, show the route and its history."
        ),
    ] = None,
) -> None:
    """Split the requests that name no version among versions by weight (canary), or show
    the route. Every version with a weight is loaded; a running server follows within
    AIMASS_RECONCILE_INTERVAL_S, and a version not ready yet gives its share to the others."""
    from aimass.cli.access import run_audited
    from aimass.registry import routes as routing

    url = _url()
    if weights is None:
        _show_routes(name, routing.history(url, name))
        return
    route = run_audited(
        "model.route",
        name,
        lambda: routing.set_route(url, name, routing.parse_weights(weights)),
    )
    typer.echo(f"{name}: routed {route.describe()}")


def _show_routes(name: str, history: list) -> None:
    """The history of ``name``'s routes, newest first, the one in force marked."""
    if not history:
        typer.echo(f"{name}: no route; the newest ready version serves")
        return
    current = next((r for r in history if r.rolled_back_at is None), None)
    for route in history:
        if route.rolled_back_at is not None:
            state = f"rolled back {route.rolled_back_at:%Y-%m-%d %H:%M:%S}"
        else:
            state = "in force" if route is current else "replaced"
        typer.echo(f"{route.created_at:%Y-%m-%d %H:%M:%S}  {route.describe():<24}{state}")


@models_app.command("rollback")
def models_rollback(name: str) -> None:
    """Go back to the route before the current one (promote and route keep their history)."""
    from aimass.cli.access import run_audited
    from aimass.registry import routes as routing

    route = run_audited("model.rollback", name, lambda: routing.rollback(_url(), name))
    typer.echo(f"{name}: rolled back to {route.describe()}")


# --- embeddings (issue 4): int8 variant behind a quality gate ---
@models_app.command("optimize")
def models_optimize(
    name: str,
    int8: Annotated[
        bool, typer.Option("--int8", help="Export to ONNX and quantize to int8.")
    ] = False,
    version: Annotated[
        int | None, typer.Option(help="Version to start from (default: newest).")
    ] = None,
) -> None:
    """Make a faster variant as a new version, only if it matches the fp32 model closely."""
    from aimass.cli.access import run_audited
    from aimass.provision.optimize import optimize_model

    if not int8:
        _fail("say which optimization to make: --int8")
    settings = _settings()
    entry = run_audited(
        "model.optimize",
        _target(name, version),
        lambda: optimize_model(settings.resolved_database_url, settings.home, name, version),
    )
    gate = entry.notes["quality_gate"]
    typer.echo(
        f"{name} version {entry.spec.version} registered (int8 ONNX of version "
        f"{entry.notes['optimized_from']}): mean cosine {gate['mean_cosine']:.4f}, "
        f"min {gate['min_cosine']:.4f} over {gate['sentences']} sentences. "
        f"Serve it with: aimass models load {name} --version {entry.spec.version}"
    )


@models_app.command("remove")
def models_remove(name: str, version: Annotated[int | None, typer.Option()] = None) -> None:
    """Forget a model (or one version); a running server unloads it."""
    from aimass.cli.access import run_audited
    from aimass.registry import models as registry

    versions = run_audited(
        "model.remove", _target(name, version), lambda: registry.remove_model(_url(), name, version)
    )
    typer.echo(f"removed {name} version(s) {', '.join(map(str, versions))}")


@app.command()
def infer(
    model: str,
    data: Annotated[str, typer.Option(help="JSON: {input_name: nested list} or a v2 request.")],
    url: Annotated[
        str | None,
        typer.Option(
            help="Server base URL; by default http://AIMASS_HOST:AIMASS_PORT, the address "
            "`aimass serve` uses (http://127.0.0.1:8000 unless those are set).",
        ),
    ] = None,
    version: Annotated[int | None, typer.Option()] = None,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="AIMASS_API_KEY", help="API key, sent as a Bearer token."),
    ] = None,
    timeout_s: Annotated[float, typer.Option(help="Seconds to wait for the answer.")] = 60.0,
) -> None:
    """Send one Open Inference Protocol request to a running server and print the outputs."""
    try:
        body = json.loads(data)
    except ValueError as exc:
        _fail(f"--data is not JSON: {exc}")
    base = (url or _server_url()).rstrip("/")
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    if "inputs" not in body:
        meta = _call("GET", base, path, headers=headers, timeout_s=timeout_s)
        declared = {i["name"]: i["datatype"] for i in meta.get("inputs", [])}
        body = {"inputs": [_tensor(k, v, declared.get(k)) for k, v in body.items()]}
    answer = _call("POST", base, path + "/infer", headers=headers, timeout_s=timeout_s, json=body)
    typer.echo(json.dumps(answer, indent=2))


def _server_url() -> str:
    """The server ``aimass serve`` would start with the same environment (AIMASS_HOST,
    AIMASS_PORT); an any-address bind is reached on loopback."""
    settings = _settings()
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(settings.host, settings.host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def _call(method: str, base: str, path: str, *, timeout_s: float, **kw: Any) -> Any:
    """One request to the server, its JSON answer; anything else ends the command with one
    line naming the URL (no server there, a timeout, an error status)."""
    import httpx

    target = base + path
    try:
        resp = httpx.request(method, target, timeout=timeout_s, **kw)
    except httpx.ConnectError:
        _fail(
            f"no AI Mass server answered at {base} (tried {method} {target}); start one with "
            "`aimass serve`, or point --url (or AIMASS_HOST / AIMASS_PORT) at it"
        )
    except httpx.TimeoutException:
        _fail(f"{method} {target}: no answer within {timeout_s:g} s (--timeout-s)")
    except httpx.HTTPError as exc:
        _fail(f"{method} {target} failed: {exc}")
    try:
        answer = resp.json()
    except ValueError:
        answer = None
    if resp.status_code >= 400 or answer is None:
        _fail(f"{method} {target}: {resp.status_code} {_error_text(answer, resp.text)}")
    return answer


def _error_text(answer: Any, text: str) -> str:
    """The message of an error answer in either protocol's shape, else the body's start."""
    error = answer.get("error") if isinstance(answer, dict) else None
    if isinstance(error, dict):
        error = error.get("message")
    return str(error) if error else text[:200]


def _tensor(name: str, value: Any, datatype: str | None) -> dict[str, Any]:
    """A v2 input from plain JSON; the datatype comes from the model's metadata if known."""
    import numpy as np

    arr = np.asarray(value)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    guess = {"f": "FP32", "i": "INT64", "b": "BOOL", "U": "BYTES"}.get(arr.dtype.kind, "FP32")
    return {
        "name": name,
        "shape": list(arr.shape),
        "datatype": datatype or guess,
        "data": arr.tolist(),
    }


def _register_access_commands() -> None:
    from aimass.cli import access as cli_access

    app.add_typer(cli_access.keys_app, name="keys")
    app.command("usage")(cli_access.usage)
    app.command("audit")(cli_access.audit)


def _register_files_commands() -> None:
    from aimass.cli.files import files_app

    app.add_typer(files_app, name="files")


_register_access_commands()
_register_files_commands()


def _register_stores_commands() -> None:
    from aimass.cli.stores import stores_app

    app.add_typer(stores_app, name="stores")


_register_stores_commands()


def _register_jobs_commands() -> None:
    from aimass.cli.jobs import jobs_app

    app.add_typer(jobs_app, name="jobs")


_register_jobs_commands()


def _register_fine_tune_commands() -> None:
    from aimass.cli.fine_tune import fine_tune_app

    app.add_typer(fine_tune_app, name="fine-tune")


_register_fine_tune_commands()


def _register_scenario_commands() -> None:
    from aimass.cli.forecast import forecast_app
    from aimass.cli.recommend import recommend_app

    app.add_typer(recommend_app, name="recommend")
    app.add_typer(forecast_app, name="forecast")


_register_scenario_commands()


def _register_risk_commands() -> None:
    from aimass.cli.risk import risk_app

    app.add_typer(risk_app, name="risk")


_register_risk_commands()
