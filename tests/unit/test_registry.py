from __future__ import annotations

import pytest

from aimass.errors import Conflict, NotFound
from aimass.registry import models as registry
from aimass.spec import ModelSpec


@pytest.fixture()
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'reg.db'}"


def spec(version=1, **kw):
    return ModelSpec(name="m", version=version, runtime="onnx", source="/m.onnx", **kw)


def test_versions_desired_state_and_removal(url):
    registry.add_model(url, spec(1), load=True)
    registry.add_model(url, spec(2))
    assert registry.next_version(url, "m") == 3
    assert [(e.spec.version, e.desired) for e in registry.list_models(url)] == [
        (1, "loaded"),
        (2, "unloaded"),
    ]
    assert registry.get_model(url, "m").spec.version == 2
    assert registry.set_desired(url, "m", None, "loaded") == [2]
    assert registry.set_desired(url, "m", None, "unloaded") == [1, 2]
    registry.set_state(url, "m", 1, "failed", "boom")
    assert registry.get_model(url, "m", 1).last_error == "boom"
    assert registry.remove_model(url, "m", 1) == [1]
    with pytest.raises(NotFound):
        registry.get_model(url, "m", 1)


def test_duplicates_conflict_unless_replaced(url):
    registry.add_model(url, spec(1))
    with pytest.raises(Conflict, match="already registered"):
        registry.add_model(url, spec(1))
    registry.add_model(url, spec(1, threads=4), replace=True, notes={"gate": "ok"})
    entry = registry.get_model(url, "m", 1)
    assert entry.spec.threads == 4 and entry.notes == {"gate": "ok"}


def test_unknown_models_are_not_found(url):
    with pytest.raises(NotFound):
        registry.set_desired(url, "ghost", None, "loaded")
    with pytest.raises(NotFound):
        registry.remove_model(url, "ghost")
