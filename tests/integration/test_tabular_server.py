"""A LightGBM classifier served over the Open Inference Protocol, driven by the Triton client."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.conftest import run_server
from tests.factories_tabular import N_FEATURES, make_lightgbm_model, random_rows


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The server with one LightGBM classifier, and the LGBMClassifier it was saved from."""
    tmp = tmp_path_factory.mktemp("tabular-server")
    model = make_lightgbm_model(tmp / "churn.txt", n_classes=3)
    spec = {
        "name": "churn",
        "runtime": "tabular",
        "task": "classification",
        "source": str(tmp / "churn.txt"),
        "options": {"classes": ["stay", "maybe", "leave"]},
        "batching": {"max_batch_size": 64},
    }
    with run_server(tmp, [spec]) as server:
        client = triton.InferenceServerClient(url=server.removeprefix("http://"))
        yield client, model
        client.close()


def features_input(rows: np.ndarray, binary: bool) -> triton.InferInput:
    tensor = triton.InferInput("features", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows, binary_data=binary)
    return tensor


def test_metadata_lists_the_tabular_tensors(served):
    client, _ = served
    meta = client.get_model_metadata("churn")
    assert meta["platform"] == "tabular"
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [
        ("features", "FP32", [-1, N_FEATURES])
    ]
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["outputs"]] == [
        ("label", "BYTES", [-1]),
        ("probabilities", "FP32", [-1, 3]),
    ]


@pytest.mark.parametrize("binary", [False, True])
def test_predictions_match_lightgbm(served, binary):
    client, model = served
    rows = random_rows(20, seed=7)
    result = client.infer("churn", [features_input(rows, binary)])
    proba = result.as_numpy("probabilities")
    np.testing.assert_allclose(proba, model.predict_proba(rows), rtol=1e-5, atol=1e-6)
    labels = [x.decode() if isinstance(x, bytes) else x for x in result.as_numpy("label")]
    assert labels == [["stay", "maybe", "leave"][i] for i in model.predict(rows)]


def test_wrong_feature_count_is_a_400(served):
    client, _ = served
    with pytest.raises(InferenceServerException) as err:
        client.infer("churn", [features_input(random_rows(2, n_features=N_FEATURES - 1), False)])
    assert "400" in str(err.value.status()) and str(N_FEATURES) in str(err.value)
