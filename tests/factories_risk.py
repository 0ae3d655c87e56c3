"""Generated card transactions for the risk tests: the repository's own generator
(``examples/data/make_risk.py``, also used by the docs and the benchmark), loaded by path."""

from __future__ import annotations

import importlib.util

from tests.conftest import ROOT


def transactions(events: int, **kw) -> list[dict]:
    """``events`` seeded transactions (see ``make_risk.generate`` for ``seed`` and
    ``unlabelled_share``)."""
    spec = importlib.util.spec_from_file_location("make_risk", ROOT / "examples/data/make_risk.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate(events, **kw)
