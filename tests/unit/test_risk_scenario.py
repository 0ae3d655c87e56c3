"""The risk library: one feature code for training and serving, the safe rules language, and
training beside the rules-only baseline (generated data)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aimass.errors import InvalidInput
from aimass.scenarios.risk.features import FeatureConfig, FeatureState, replay
from aimass.scenarios.risk.rules import decide, parse_rule, parse_rules
from aimass.scenarios.risk.train import check_params, train
from tests.factories_risk import transactions

CONFIG = FeatureConfig(entities=("card", "device"), numeric=("merchant_risk",))


def test_serving_features_equal_training_features_across_a_restart():
    events = transactions(800, seed=3)
    trained, order, _ = replay(CONFIG, events)
    served = FeatureState(CONFIG)
    for n, i in enumerate(order):
        if n % 97 == 0:  # a restart: the state goes through its persisted JSON form
            restored = FeatureState(CONFIG)
            for key in served.entities:
                restored.load(key, json.loads(json.dumps(served.dump(key))))
            served = restored
        np.testing.assert_array_equal(served.vector(events[i]), trained[i])
    card_1h = CONFIG.names.index("card_count_1h")
    assert trained[:, card_1h].max() >= 3  # bursts are seen


def test_windows_counts_and_sums_expire():
    state = FeatureState(FeatureConfig(entities=("card",)))
    names = state.config.names
    for t, amount in ((0, 10.0), (30, 20.0), (100, 5.0)):
        row = dict(
            zip(names, state.vector({"timestamp": t, "card": "a", "amount": amount}), strict=True)
        )
    assert row["card_count_1m"] == 0 and row["card_count_1h"] == 2
    assert row["card_sum_1h"] == 30.0 and row["card_since_last_s"] == 70.0


def test_rules_evaluate_without_eval_and_refuse_anything_else():
    rule = parse_rule({"name": "big", "when": "amount > 100 and score >= 0.5", "action": "block"})
    assert rule.fires({"amount": 150, "score": 0.6})
    assert not rule.fires({"amount": 150})  # a missing name does not match
    assert decide(0.6, {"review": 0.3, "block": 0.9}, [rule], {"amount": 150, "score": 0.6}) == (
        "block",
        ["big"],
    )
    for bad in ("__import__('os')", "amount.real > 1", "[1][0]", "lambda: 1", "amount if 1 else 2"):
        with pytest.raises(InvalidInput, match=r"rules\[0\]"):
            parse_rule({"name": "x", "when": bad, "action": "block"})
    with pytest.raises(InvalidInput, match="own name"):
        parse_rules([{"name": "a", "when": "1", "action": "allow"}] * 2)


def test_training_beats_the_rules_only_baseline_and_sets_thresholds(tmp_path):
    events = transactions(3000, seed=1, unlabelled_share=0.1)
    params = check_params({"entities": ["card", "device"], "numeric": ["merchant_risk"]})
    report = train(events, None, params, tmp_path / "m")
    assert report["detector"] == "both"
    assert report["metrics"]["auc_pr"] > report["baseline"]["auc_pr"]
    assert 0 <= report["thresholds"]["review"] <= report["thresholds"]["block"] <= 1
    assert {p.name for p in (tmp_path / "m").iterdir()} == {
        "risk.json",
        "gbm.txt",
        "iforest.pkl",
        "state.json",
    }


def test_bad_rows_and_params_are_named():
    with pytest.raises(InvalidInput, match=r"hyperparameters\.entities"):
        check_params({"entities": "card"})
    events = transactions(50)
    events[7]["amount"] = "lots"
    with pytest.raises(InvalidInput, match=r"row 8: column 'amount' must be a number"):
        replay(CONFIG, events)
