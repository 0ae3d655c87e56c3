"""The app's route table as one flat list, and what it serves at a path.

Read by the fast path (which routes to call directly) and by error rendering (which methods a
405 may name in ``Allow``).
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from starlette.routing import BaseRoute, Match
from starlette.types import Scope


def all_routes(app: FastAPI | APIRouter) -> list[BaseRoute]:
    """Every route ``app`` serves, its included routers' routes in place (recent FastAPI keeps
    an included router whole, as one route object holding ``original_router``)."""
    out: list[BaseRoute] = []
    for route in app.routes:
        included = getattr(route, "original_router", None)
        out += all_routes(included) if included is not None else [route]
    return out


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """Every method some route of ``app`` serves at the path of ``scope``, sorted.

    A 405 must list them all in ``Allow``; Starlette names the methods of the first route whose
    path matches, which misses the others when one path has a route per method."""
    methods: set[str] = set()
    for route in all_routes(app):
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)
