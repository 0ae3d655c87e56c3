"""A model that can never load is refused when it is added, by every way in, and nothing is
registered: ``aimass models add`` (one line, non-zero exit), ``POST /v1/admin/models`` (400/422
in OpenAI's error shape), the v2 load with ``parameters.config`` and ``aimass serve --config``.
A running server stays ready throughout (issue 16, item 4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import ROOT, make_add_model, run_server
from tests.factories_tabular import make_lightgbm_model, make_pickle_model
from tests.integration.conftest_llm import gemma_file

BODY = {
    "inputs": [
        {"name": "a", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
        {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]},
    ]
}


def cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "aimass", *args],
        env={**os.environ, "AIMASS_HOME": str(home)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory, pytestconfig) -> list[tuple[dict, str]]:
    """(spec, what the error must say) for every kind of model that can never load."""
    d = tmp_path_factory.mktemp("bad")
    make_pickle_model(d / "rf.joblib")
    make_pickle_model(d / "rf-regressor.joblib", task="regression")
    make_lightgbm_model(d / "price.txt", task="regression")
    (d / "price.bin").write_bytes((d / "price.txt").read_bytes())
    (d / "cut.onnx").write_bytes(b"\x08\x08" + b"not the rest of an ONNX model")
    tab = {"runtime": "tabular", "task": "classification"}
    return [
        ({**tab, "source": str(d / "rf.joblib")}, "trust_pickle"),
        ({**tab, "source": str(d / "price.bin")}, "options.format"),
        ({"runtime": "onnx", "source": str(gemma_file(pytestconfig))}, "GGUF"),
        ({**tab, "source": str(d / "price.txt")}, "task 'classification' does not fit"),
        ({"runtime": "onnx", "source": str(d / "missing.onnx")}, "does not exist"),
        # Found only by the trial load in a throwaway worker:
        ({**tab, "source": str(d / "rf-regressor.joblib"), "trust_pickle": True}, "regressor"),
        ({"runtime": "onnx", "source": str(d / "cut.onnx")}, "cannot be loaded"),
    ]


def _add_args(spec: dict) -> list[str]:
    args = ["--runtime", spec["runtime"], "--source", spec["source"], "--load"]
    if "task" in spec:
        args += ["--task", spec["task"]]
    if spec.get("trust_pickle"):
        args.append("--trust-pickle")
    return args


def test_cli_add_refuses_them_with_one_line_and_registers_nothing(tmp_path, bad_models):
    good = make_add_model(tmp_path / "add.onnx")
    with run_server(tmp_path, [{"name": "add", "runtime": "onnx", "source": str(good)}]) as srv:
        for spec, says in bad_models:
            out = cli(srv.home, "models", "add", "bad", *_add_args(spec))
            assert out.returncode == 1, (spec, out.stdout)
            lines = out.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
            assert says in lines[0], (spec, lines[0])
            assert "Traceback" not in out.stderr
        listed = json.loads(cli(srv.home, "models", "list", "--json").stdout)
        assert [e["spec"]["name"] for e in listed] == ["add"]
        assert not (srv.home / "models" / "bad").exists()  # no file left behind
        assert httpx.get(f"{srv}/v2/health/ready").status_code == 200
        assert httpx.post(f"{srv}/v2/models/add/infer", json=BODY).status_code == 200


def test_admin_api_refuses_them_in_openai_shape(tmp_path, bad_models):
    good = make_add_model(tmp_path / "add.onnx")
    with run_server(tmp_path, [{"name": "add", "runtime": "onnx", "source": str(good)}]) as srv:
        for spec, says in bad_models:
            r = httpx.post(
                f"{srv}/v1/admin/models?load=true", json={"name": "bad", **spec}, timeout=120
            )
            assert r.status_code in (400, 422), (spec, r.text)
            error = r.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}
            assert error["type"] == "invalid_request_error" and says in error["message"]
        r = httpx.post(
            f"{srv}/v2/repository/models/bad/load",
            json={"parameters": {"config": json.dumps(bad_models[0][0])}},
            timeout=120,
        )
        assert r.status_code == 400 and "trust_pickle" in r.json()["error"]
        listed = httpx.get(f"{srv}/v1/admin/models").json()["data"]
        assert [e["name"] for e in listed] == ["add"]
        assert httpx.get(f"{srv}/v2/health/ready").status_code == 200
        # A good model still registers, into the registry's own folder, and serves.
        r = httpx.post(
            f"{srv}/v1/admin/models?load=true",
            json={"name": "add2", "runtime": "onnx", "source": str(good)},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        assert r.json()["spec"]["source"] == str(srv.home / "models" / "add2" / "1" / "add.onnx")
        assert httpx.post(f"{srv}/v2/models/add2/infer", json=BODY).status_code == 200


def test_serve_config_refuses_them_before_serving(tmp_path, bad_models):
    home = tmp_path / "home"
    for spec, says in bad_models[:1] + bad_models[-1:]:
        config = tmp_path / "models.yaml"
        config.write_text(yaml.safe_dump({"models": [{"name": "bad", **spec}]}))
        out = cli(home, "serve", "--no-builtins", "--config", str(config), "--port", "1")
        assert out.returncode == 1
        assert says in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert json.loads(cli(home, "models", "list", "--json").stdout) == []
