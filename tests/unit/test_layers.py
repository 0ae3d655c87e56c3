"""The layer contracts (``[tool.importlinter]`` in pyproject.toml) cover the whole package.

``make test`` runs ``lint-imports``, which checks the contracts; this test checks that no part
of ``aimass`` is outside them, so a new folder (``jobs/``, ``scenarios/``...) is either given
its row of the layer table or fails here.
"""

from __future__ import annotations

import pkgutil
import tomllib

import aimass
import aimass.runtimes
from tests.conftest import ROOT

TOP = {"aimass.cli", "aimass.__main__"}
"""The command line sits above every layer: the contracts forbid importing it instead."""


def _contracts() -> list[dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return config["contracts"]


def _sources(contract: dict) -> set[str]:
    return set(contract.get("source_modules", contract.get("modules", [])))


def _parts(package) -> set[str]:
    return {f"{package.__name__}.{m.name}" for m in pkgutil.iter_modules(package.__path__)}


def test_every_part_of_the_package_is_the_source_of_a_contract():
    covered = set().union(*(_sources(c) for c in _contracts()))
    assert _parts(aimass) - TOP - covered == set()


def test_no_part_of_the_package_may_import_the_command_line():
    forbidding = [c for c in _contracts() if "aimass.cli" in c.get("forbidden_modules", [])]
    covered = set().union(*(_sources(c) for c in forbidding))
    assert _parts(aimass) - TOP - covered == set()


def test_every_runtime_is_independent_of_the_others():
    shared = {"aimass.runtimes.base", "aimass.runtimes.onnx_session"}
    independent = next(c for c in _contracts() if c["type"] == "independence")
    assert set(independent["modules"]) == _parts(aimass.runtimes) - shared
