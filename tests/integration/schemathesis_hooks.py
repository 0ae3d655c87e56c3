"""schemathesis hooks for ``test_openapi_schemathesis.py``: real names in generated requests.

The schemathesis run loads this file (``SCHEMATHESIS_HOOKS``). Generated strings almost never
name a model the server serves, so most requests would stop at a 404 before reaching the model.
The hook swaps a generated model name (path parameter, or a body's ``model``) for a served one,
each served name in turn and then the made-up one (which checks the 404s).

Destructive operations (unload, remove; rotating and revoking keys) are pointed at a scratch
model and a scratch key only, so they never take away what the rest of the run needs.
The names are in ``schemathesis_names.py``: importing this file registers its hook globally, so
only the schemathesis run does (the test's own calls must go out as they are written).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import schemathesis

from tests.integration.schemathesis_names import (
    ADMIN,
    DESTRUCTIVE,
    LLM,
    MODEL_FIELD,
    REMOVABLE,
    SCRATCH,
    SCRATCH_KEY,
    SERVED,
)

PROTECTED = {ADMIN, *SERVED}
"""Never the target of a destructive operation: schemathesis learns names from answers (the
key list, the model list) and would otherwise revoke the admin key or remove a served model."""


_drawn: Counter[str] = Counter()


def pick(value: Any, choices: list[str], where: str) -> Any:
    """In turn, each name of ``choices``, then ``value`` itself (a made-up name), counted per
    ``where``: deterministic, since one worker generates the cases in a fixed order. An empty
    name stays: it is the coverage phase's invalid value (below ``minLength``), to be refused."""
    if not choices or not isinstance(value, str) or not value:
        return value
    turn = _drawn[where] % (len(choices) + 1)
    _drawn[where] += 1
    return value if turn == len(choices) else choices[turn]


def names_for(method: str, path: str) -> list[str]:
    """The real names an operation's ``{name}`` / ``{model}`` may be given."""
    if (method, path) in DESTRUCTIVE:
        return [scratch_for(method, path)]
    return SERVED


def scratch_for(method: str, path: str) -> str:
    """What a destructive operation may destroy."""
    if path.startswith("/v1/keys/"):
        return SCRATCH_KEY
    return REMOVABLE if method == "DELETE" else SCRATCH


@schemathesis.hook
def before_call(ctx, case, **kwargs) -> None:
    """Real names in the request about to leave, in every phase (the coverage phase does not
    run the ``map_*`` hooks): a served name for ``{name}``/``{model}``, ``{version}`` and a
    body's ``model``, in turn with the generated one. A destructive operation aimed at a
    protected name (generated, or learned from an earlier answer) is aimed at the scratch one
    instead, a registration never replaces a served model, and a generation asks for one
    token."""
    operation = case.operation
    method, path = operation.method.upper(), operation.path
    params = dict(case.path_parameters or {})
    for field in ("name", "model"):
        if field in params:
            params[field] = pick(
                params[field], names_for(method, path), f"{operation.label} {field}"
            )
    if "version" in params:
        params["version"] = pick(params["version"], ["1"], f"{operation.label} version")
    if (method, path) in DESTRUCTIVE and _protected(params.get("name")):
        params["name"] = scratch_for(method, path)
    if params:
        case.path_parameters = params
    body = case.body
    if isinstance(body, dict) and "model" in body:
        choices = MODEL_FIELD.get(path, [])
        case.body = body = {**body, "model": pick(body["model"], choices, operation.label)}
    if isinstance(body, dict) and body.get("model") == LLM:
        one = ONE_TOKEN if path == "/v1/chat/completions" else {"max_tokens": 1}
        case.body = body = {**body, **one}
    if path == "/v1/admin/models" and isinstance(body, dict) and _protected(body.get("name")):
        case.body = {**body, "name": SCRATCH}
    if path == "/v1/risk/alerts/stream":  # the stream ends after wait_s without an alert
        case.query = {**(case.query or {}), "wait_s": 0.2}


ONE_TOKEN = {"max_tokens": 1, "max_completion_tokens": 1}
"""What a generation may ask of the LLM here: one token answers in the same shapes as many
(JSON or an SSE stream), and a CPU decodes it in tens of milliseconds. (Completions know no
``max_completion_tokens``: they get ``max_tokens`` only.)"""


def _protected(name: Any) -> bool:
    return isinstance(name, str) and name in PROTECTED
