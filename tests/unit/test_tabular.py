"""The tabular runtime answers exactly what LightGBM / scikit-learn answer, and refuses safely."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aimass.errors import InvalidInput
from aimass.runtimes import create_runtime
from aimass.runtimes.tabular import TabularRuntime
from aimass.spec import ModelSpec
from tests.factories_tabular import (
    N_FEATURES,
    make_lightgbm_model,
    make_pickle_model,
    make_sklearn_onnx_model,
    random_rows,
)


def load(source: Path, task: str = "classification", **extra: Any) -> TabularRuntime:
    spec = ModelSpec(name="t", runtime="tabular", task=task, source=str(source), **extra)
    runtime = create_runtime(spec)
    assert isinstance(runtime, TabularRuntime)
    runtime.load()
    return runtime


def infos(tensors: list) -> dict[str, tuple[str, list[int]]]:
    return {t.name: (t.datatype, t.shape) for t in tensors}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Any]]:
    """Every model file the tests use, built once (about a second in all)."""
    root = tmp_path_factory.mktemp("tabular")
    built = {}
    makers = {
        "lgb_binary": ("m.txt", lambda p: make_lightgbm_model(p)),
        "lgb_multi": ("multi.lgb", lambda p: make_lightgbm_model(p, n_classes=3)),
        "lgb_reg": ("reg.txt", lambda p: make_lightgbm_model(p, task="regression")),
        "onnx_clf": ("clf.onnx", lambda p: make_sklearn_onnx_model(p)),
        "onnx_str": ("str.onnx", lambda p: make_sklearn_onnx_model(p, string_labels=True)),
        "onnx_zip": ("zip.onnx", lambda p: make_sklearn_onnx_model(p, zipmap=True)),
        "onnx_reg": ("reg.onnx", lambda p: make_sklearn_onnx_model(p, task="regression")),
        "pickle_clf": ("rf.joblib", lambda p: make_pickle_model(p)),
        "pickle_reg": ("rf.pkl", lambda p: make_pickle_model(p, task="regression")),
    }
    for key, (filename, make) in makers.items():
        path = root / filename
        built[key] = (path, make(path))
    return built


def test_lightgbm_binary_matches_predict_proba(models):
    path, model = models["lgb_binary"]
    runtime = load(path, threads=2)
    x = random_rows(32)
    out = runtime.infer({"features": x})
    np.testing.assert_allclose(out["probabilities"], model.predict_proba(x), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(out["label"], model.predict(x))
    assert out["label"].dtype == np.int64 and out["probabilities"].dtype == np.float32
    assert infos(runtime.inputs()) == {"features": ("FP32", [-1, N_FEATURES])}
    assert infos(runtime.outputs()) == {
        "label": ("INT64", [-1]),
        "probabilities": ("FP32", [-1, 2]),
    }
    info = runtime.describe()
    assert info["format"] == "lightgbm" and info["objective"] == "binary"
    assert (info["n_features"], info["classes"]) == (N_FEATURES, [0, 1])


def test_lightgbm_float64_rows_give_the_library_answer(models):
    path, model = models["lgb_binary"]
    x = random_rows(8).astype(np.float64) + 1e-9
    out = load(path).infer({"features": x})
    np.testing.assert_allclose(out["probabilities"], model.predict_proba(x), rtol=1e-6, atol=1e-7)


def test_lightgbm_multiclass_with_named_classes(models):
    path, model = models["lgb_multi"]
    runtime = load(path, options={"classes": ["low", "mid", "high"]})
    x = random_rows(20)
    out = runtime.infer({"features": x})
    np.testing.assert_allclose(out["probabilities"], model.predict_proba(x), rtol=1e-6, atol=1e-7)
    expected = np.array(["low", "mid", "high"], dtype=object)[model.predict(x)]
    np.testing.assert_array_equal(out["label"], expected)
    assert infos(runtime.outputs())["label"] == ("BYTES", [-1])
    assert runtime.describe()["classes"] == ["low", "mid", "high"]


def test_lightgbm_classes_option_must_match_the_model(models):
    with pytest.raises(InvalidInput, match=r"options\.classes must list 3"):
        load(models["lgb_multi"][0], options={"classes": ["a", "b"]})


def test_lightgbm_regression(models):
    path, model = models["lgb_reg"]
    runtime = load(path, task="regression")
    x = random_rows(10)
    out = runtime.infer({"features": x})
    np.testing.assert_allclose(out["prediction"], model.predict(x), rtol=1e-6)
    assert infos(runtime.outputs()) == {"prediction": ("FP32", [-1])}
    assert "classes" not in runtime.describe()


def test_task_tensor_takes_the_models_own_kind(models):
    assert load(models["lgb_reg"][0], task="tensor").describe()["task"] == "regression"
    assert load(models["onnx_clf"][0], task="tensor").describe()["task"] == "classification"


@pytest.mark.parametrize(
    ("key", "task", "message"),
    [
        ("lgb_reg", "classification", "needs a classifier"),
        ("lgb_binary", "regression", "does not fit a classifier"),
        ("onnx_reg", "classification", "needs a classifier"),
        ("pickle_reg", "classification", "needs a classifier"),
    ],
)
def test_task_that_does_not_fit_the_model_is_refused(models, key, task, message):
    with pytest.raises(InvalidInput, match=message) as err:
        load(models[key][0], task=task, trust_pickle=True)
    assert err.value.param == "task"


def test_onnx_classifier_uses_its_own_input_names(models):
    path, model = models["onnx_clf"]
    runtime = load(path, threads=2)
    assert infos(runtime.inputs()) == {"float_input": ("FP32", [-1, N_FEATURES])}
    assert infos(runtime.outputs()) == {
        "label": ("INT64", [-1]),
        "probabilities": ("FP32", [-1, 3]),
    }
    x = random_rows(25)
    out = runtime.infer({"float_input": x})
    np.testing.assert_allclose(out["probabilities"], model.predict_proba(x), atol=1e-5)
    np.testing.assert_array_equal(out["label"], model.predict(x))
    assert runtime.describe() == {
        "format": "onnx",
        "task": "classification",
        "n_features": N_FEATURES,
        "classes": [0, 1, 2],
    }


@pytest.mark.parametrize("key", ["onnx_str", "onnx_zip"])
def test_onnx_string_labels_and_zipmap_output(models, key):
    path, model = models[key]
    runtime = load(path)
    x = random_rows(12)
    out = runtime.infer({"float_input": x.astype(np.float64)})
    np.testing.assert_allclose(out["probabilities"], model.predict_proba(x), atol=1e-5)
    np.testing.assert_array_equal(out["label"], model.predict(x))
    assert runtime.describe()["classes"] == [_plain(c) for c in model.classes_]
    expected_label = "BYTES" if key == "onnx_str" else "INT64"
    assert infos(runtime.outputs())["label"] == (expected_label, [-1])


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def test_onnx_regression(models):
    path, model = models["onnx_reg"]
    runtime = load(path, task="regression")
    x = random_rows(9)
    out = runtime.infer({"float_input": x})
    assert out["prediction"].shape == (9,)
    np.testing.assert_allclose(out["prediction"], model.predict(x), rtol=1e-5, atol=1e-5)


def test_pickle_is_refused_without_trust_pickle(models):
    path, _ = models["pickle_clf"]
    spec = ModelSpec(name="t", runtime="tabular", task="classification", source=str(path))
    with pytest.raises(InvalidInput, match="trust_pickle") as err:
        TabularRuntime(spec)
    assert err.value.param == "trust_pickle"
    forced = spec.model_copy(update={"source": str(path.with_suffix(".bin"))})
    forced.options["format"] = "joblib"
    with pytest.raises(InvalidInput, match="trust_pickle"):
        TabularRuntime(forced)


def test_trusted_pickle_matches_predict_proba(models):
    path, model = models["pickle_clf"]
    runtime = load(path, trust_pickle=True, threads=2)
    x = random_rows(30)
    out = runtime.infer({"features": x})
    np.testing.assert_allclose(out["probabilities"], model.predict_proba(x), rtol=1e-6)
    np.testing.assert_array_equal(out["label"], model.predict(x))
    assert runtime.describe()["format"] == "pickle"
    assert infos(runtime.inputs()) == {"features": ("FP32", [-1, N_FEATURES])}


def test_trusted_pickle_regression(models):
    path, model = models["pickle_reg"]
    x = random_rows(5)
    out = load(path, task="regression", trust_pickle=True).infer({"features": x})
    np.testing.assert_allclose(out["prediction"], model.predict(x), rtol=1e-6)


@pytest.mark.parametrize(
    ("key", "name"),
    [("lgb_binary", "features"), ("onnx_clf", "float_input"), ("pickle_clf", "features")],
)
def test_wrong_width_names_expected_and_got(models, key, name):
    runtime = load(models[key][0], trust_pickle=True)
    with pytest.raises(InvalidInput, match=f"expects {N_FEATURES} features per row, got 5"):
        runtime.infer({name: random_rows(3, n_features=5)})


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ({}, "missing input 'features'"),
        ({"features": random_rows(2), "extra": random_rows(2)}, r"unknown input\(s\) \['extra'\]"),
        ({"features": np.zeros(N_FEATURES, np.float32)}, r"must have shape \[-1, 6\], got \[6\]"),
        ({"features": np.full((2, N_FEATURES), "x", dtype=object)}, "must be FP32"),
    ],
)
def test_bad_batches_are_refused_not_crashed(models, batch, message):
    with pytest.raises(InvalidInput, match=message):
        load(models["lgb_binary"][0]).infer(batch)


def test_integer_features_are_converted(models):
    path, model = models["lgb_binary"]
    x = np.arange(2 * N_FEATURES, dtype=np.int64).reshape(2, N_FEATURES)
    out = load(path).infer({"features": x})
    np.testing.assert_allclose(out["probabilities"], model.predict_proba(x), rtol=1e-6)


def test_format_comes_from_suffix_or_option(models, tmp_path):
    odd = tmp_path / "model.bin"
    odd.write_bytes(models["lgb_binary"][0].read_bytes())
    with pytest.raises(InvalidInput, match=r"set options\.format") as err:
        load(odd)
    assert err.value.param == "options.format"
    assert load(odd, options={"format": "lightgbm"}).describe()["format"] == "lightgbm"
    with pytest.raises(InvalidInput, match=r"options\.format .xgboost. is not one of"):
        load(odd, options={"format": "xgboost"})


def test_missing_or_corrupt_files_are_clear_errors(tmp_path):
    with pytest.raises(InvalidInput, match="is not a file"):
        load(tmp_path / "absent.txt")
    (tmp_path / "bad.txt").write_text("not a model\n")
    with pytest.raises(InvalidInput, match="cannot read LightGBM model"):
        load(tmp_path / "bad.txt")
    (tmp_path / "bad.onnx").write_bytes(b"\x00garbage")
    with pytest.raises(InvalidInput, match="cannot read ONNX model"):
        load(tmp_path / "bad.onnx")


def test_non_tabular_task_is_refused(models):
    with pytest.raises(InvalidInput, match="not 'embedding'"):
        load(models["lgb_binary"][0], task="embedding")


def test_describe_and_outputs_survive_pickling(models):
    """The worker process sends describe() and infer() results back through pickle."""
    runtime = load(models["onnx_str"][0])
    out = runtime.infer({"float_input": random_rows(3)})
    again = pickle.loads(pickle.dumps((runtime.describe(), out)))
    assert again[0] == runtime.describe()
    np.testing.assert_array_equal(again[1]["label"], out["label"])
