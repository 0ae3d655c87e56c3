"""Model commands of the CLI write the registry directly, so each one must audit itself: who
(``cli:<os user>``), what, on which target, from where (``cli``), when and the result."""

from __future__ import annotations

import json
import logging

import pytest
from typer.testing import CliRunner

from aimass.cli.access import _actor
from aimass.cli.main import app
from tests.conftest import make_add_model


@pytest.fixture
def runner(tmp_path, monkeypatch) -> CliRunner:
    monkeypatch.setenv("AIMASS_HOME", str(tmp_path))
    # ``serve`` gives the "aimass" logger a handler on the stderr CliRunner swaps in for one
    # invocation; left in place, later tests in this process would log to a closed stream.
    logger = logging.getLogger("aimass")
    monkeypatch.setattr(logger, "handlers", list(logger.handlers))
    monkeypatch.setattr(logger, "propagate", logger.propagate)
    monkeypatch.setattr(logger, "level", logger.level)
    return CliRunner()


def run(runner: CliRunner, *args: str, code: int = 0) -> str:
    out = runner.invoke(app, list(args))
    assert out.exit_code == code, out.output
    return out.output


def trail(runner: CliRunner) -> list[tuple[str, str, str, str]]:
    """(action, target, source, result) of every entry, oldest first, from ``aimass audit``."""
    rows = json.loads(run(runner, "audit", "--json", "--actor", _actor()))
    assert all(r["at"].endswith("Z") for r in rows)
    return [(r["action"], r["target"], r["source"], r["result"]) for r in reversed(rows)]


def test_model_commands_are_audited_with_their_result(runner, tmp_path):
    source = str(make_add_model(tmp_path / "add.onnx"))
    run(runner, "models", "add", "add", "--runtime", "onnx", "--source", source)
    run(runner, "models", "add", "bad", "--runtime", "nope", "--source", source, code=1)
    opt = ["--option", "novalue"]
    run(runner, "models", "add", "add", "--runtime", "onnx", "--source", source, *opt, code=1)
    run(runner, "models", "load", "add")
    run(runner, "models", "load", "ghost", code=1)
    run(runner, "models", "unload", "add", "--version", "1")
    run(runner, "models", "remove", "add")
    got = [(a, t, s, r.split(":")[0].split()[0]) for a, t, s, r in trail(runner)]
    assert got == [
        ("model.register", "add:1", "cli", "ok"),
        ("model.register", "bad:1", "cli", "error"),
        ("model.register", "add:2", "cli", "error"),
        ("model.load", "add", "cli", "ok"),
        ("model.load", "ghost", "cli", "error"),
        ("model.unload", "add:1", "cli", "ok"),
        ("model.remove", "add", "cli", "ok"),
    ]
    assert "novalue" in trail(runner)[2][3]  # the error says what was wrong


def test_serve_config_that_cannot_be_read_is_audited(runner, tmp_path):
    missing = tmp_path / "nope.yaml"
    out = run(runner, "serve", "--no-builtins", "--config", str(missing), code=1)
    assert "does not exist" in out
    assert trail(runner) == [
        ("model.register", str(missing), "cli", f"error: config file {missing} does not exist")
    ]
