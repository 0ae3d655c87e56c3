"""Serving routes: the registry's history (set, promote, rollback, validation), the engine's
weighted choice, which skips routed versions that are not ready, and promotion by evaluation
results (``promote_if_better``)."""

from __future__ import annotations

import logging
import random
from collections import Counter

import pytest

from aimass.engine.deployment import FAILED, LOADING, READY, Deployment, Supervision
from aimass.engine.manager import ModelManager
from aimass.errors import Conflict, InvalidInput, NotFound, Unprocessable
from aimass.registry import evaluations
from aimass.registry import models as registry
from aimass.registry import routes as routing
from aimass.spec import ModelSpec


@pytest.fixture()
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'reg.db'}"


def spec(version: int, name: str = "m") -> ModelSpec:
    return ModelSpec(name=name, version=version, runtime="onnx", source="/m.onnx")


def test_weights_are_parsed_and_checked_with_errors_that_name_weights():
    assert routing.parse_weights("3:90, 4:10") == {3: 90, 4: 10}
    assert routing.check_weights({"4": 10, "3": 90}) == {3: 90, 4: 10}
    bad = [
        ("3:90,4:5", r"must sum to 100 \(percent\), got 95"),
        ("3", "VERSION:PERCENT pairs"),
        ("3:x", "VERSION:PERCENT pairs"),
        ("0:100", "positive integer"),
        ("3:50,3:50", "version 3 twice"),
    ]
    for text, message in bad:
        with pytest.raises(InvalidInput, match=message) as err:
            routing.check_weights(routing.parse_weights(text))
        assert err.value.param == "weights", text
    for weights in ({}, {"3": 101}, {"3": True}, {"3": 50.0, "4": 50}, {"x": 100}):
        with pytest.raises(InvalidInput) as err:
            routing.check_weights(weights)
        assert err.value.param == "weights", weights


def test_routes_are_history_and_rollback_walks_back(url):
    for v in (1, 2, 3):
        registry.add_model(url, spec(v))
    assert routing.current_route(url, "m") is None
    assert routing.promote(url, "m", 2).weights == {2: 100}
    assert registry.get_model(url, "m", 2).desired == "loaded"
    canary = routing.set_route(url, "m", {"2": 90, "3": 10})
    assert canary.describe() == "2:90,3:10"
    assert routing.current_routes(url)["m"].weights == {2: 90, 3: 10}
    assert registry.get_model(url, "m", 3).desired == "loaded"
    assert routing.rollback(url, "m").weights == {2: 100}
    assert routing.current_route(url, "m").weights == {2: 100}
    history = routing.history(url, "m")
    assert [(r.describe(), r.rolled_back_at is not None) for r in history] == [
        ("2:90,3:10", True),
        ("2:100", False),
    ]
    with pytest.raises(Conflict, match="no earlier route"):
        routing.rollback(url, "m")
    with pytest.raises(Conflict, match="has no route"):
        routing.rollback(url, "other")


def test_a_route_names_only_registered_versions_and_goes_with_its_model(url):
    registry.add_model(url, spec(1))
    with pytest.raises(NotFound, match="has no version 7") as err:
        routing.set_route(url, "m", {1: 50, 7: 50})
    assert err.value.param == "weights"
    with pytest.raises(NotFound, match="'nope' is not registered"):
        routing.promote(url, "nope", 1)
    assert routing.current_route(url, "m") is None  # nothing was written
    routing.promote(url, "m", 1)
    registry.remove_model(url, "m")
    registry.add_model(url, spec(1))
    assert routing.history(url, "m") == []


def manager_with(states: dict[int, str], seed: int = 7) -> ModelManager:
    """A manager holding versions of ``m`` in the given states (no process is started)."""
    manager = ModelManager(rng=random.Random(seed))
    for version, state in states.items():
        dep = Deployment(spec(version), Supervision())
        dep.state = state
        manager._deployments[dep.spec.key] = dep
    return manager


def picks(manager: ModelManager, n: int = 2000) -> Counter:
    return Counter(manager.get("m").spec.version for _ in range(n))


def test_requests_without_a_version_follow_the_weights():
    manager = manager_with({1: READY, 2: READY, 3: READY})
    assert picks(manager, 10) == {3: 10}  # no route: the newest ready version
    manager.set_routes({"m": {1: 90, 2: 10, 3: 0}})
    counts = picks(manager)
    assert set(counts) == {1, 2}
    assert 0.08 <= counts[2] / 2000 <= 0.12
    assert manager.get("m", 3).spec.version == 3  # a named version is served as named
    assert manager.primary("m").spec.version == 1
    assert {manager.get("m", choose=False).spec.version for _ in range(50)} == {1}


def test_a_routed_version_that_is_not_ready_gives_its_share_to_the_others(caplog):
    manager = manager_with({1: READY, 2: FAILED, 3: LOADING})
    manager.set_routes({"m": {1: 50, 2: 25, 3: 25}})
    with caplog.at_level(logging.WARNING, "aimass.engine.routes"):
        assert picks(manager) == {1: 2000}
    assert caplog.text.count("routed version(s) 2, 3 not ready") == 1  # once, not per request
    manager._deployments[("m", 1)].state = FAILED
    manager._deployments[("m", 3)].state = READY
    assert picks(manager, 100) == {3: 100}


def test_with_no_routed_version_ready_the_newest_ready_version_serves(caplog):
    manager = manager_with({1: READY, 2: READY, 3: LOADING})
    manager.set_routes({"m": {3: 100}})  # just promoted, still loading
    with caplog.at_level(logging.WARNING, "aimass.engine.routes"):
        assert picks(manager, 50) == {2: 50}
    assert "no routed version is ready (3)" in caplog.text
    assert manager.primary("m").spec.version == 2


def evaluated(url, scores: dict[int, float], metric: str = "accuracy", dataset: str = "file-v"):
    for version, score in scores.items():
        registry.add_model(url, spec(version), load=version == 1)
        evaluations.record_evaluation(url, "m", version, dataset, {metric: score})


def test_a_candidate_is_promoted_only_if_it_beats_the_serving_version_by_the_margin(url):
    evaluated(url, {1: 0.80, 2: 0.81, 3: 0.85})
    assert evaluations.serving_version(url, "m") == 1  # marked loaded, no route yet
    kept = evaluations.promote_if_better(url, "m", 2, "accuracy", 0.02)
    assert not kept.promoted and (kept.candidate, kept.serving) == (0.81, 0.80)
    assert "not promoted: accuracy on file-v: version 2 0.81, serving version 1 0.8" in kept.reason
    assert routing.current_route(url, "m") is None
    done = evaluations.promote_if_better(url, "m", 3, "accuracy", 0.02)
    assert done.promoted and done.serving_version == 1
    assert routing.current_route(url, "m").weights == {3: 100}
    assert registry.get_model(url, "m", 3).notes["evaluations"]["file-v"]["metrics"] == {
        "accuracy": 0.85
    }
    again = evaluations.promote_if_better(url, "m", 3, "accuracy", 0.0)
    assert not again.promoted and again.reason == "version 3 already serves"


def test_lower_is_better_for_losses_and_results_on_other_data_are_not_compared(url):
    evaluated(url, {1: 2.0, 2: 1.5}, metric="loss")
    assert evaluations.promote_if_better(url, "m", 2, "loss", 0.5).promoted
    evaluations.record_evaluation(url, "m", 1, "held-out", {"loss": 9.0})
    with pytest.raises(Unprocessable, match="no 'loss' evaluated on 'held-out'"):
        evaluations.promote_if_better(url, "m", 1, "loss", 0.1)  # version 2 has no held-out
    with pytest.raises(Unprocessable, match="no evaluation with 'f1'"):
        evaluations.promote_if_better(url, "m", 1, "f1", 0.1)
    with pytest.raises(InvalidInput, match="margin"):
        evaluations.promote_if_better(url, "m", 1, "loss", -1)
    with pytest.raises(InvalidInput, match="finite number"):
        evaluations.record_evaluation(url, "m", 1, "x", {"loss": float("nan")})
