"""OCR through the real server: the same lines as RapidOCR in process on rendered English and
Chinese images, both ways to send an image, a user model registered from a folder, and
refusals (400/413) that leave the replica serving."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest

from aimass.provision.builtin import OCR, ocr_builtins
from tests.conftest import run_server
from tests.factories_vision import FONT, render

LIMITED = "ocr-limited"
PAGES = {
    "english": ["Invoice 2024-117: total due 1,250.00 USD", "Pay by bank transfer within 30 days."],
    "chinese": ["人工智能大模型即服务", "图像识别与多模态交互"],
}

pytestmark = pytest.mark.skipif(
    FONT is None,
    reason="no CJK font to render test images (apt-get install -y fonts-wqy-microhei; "
    ".ci/run does it)",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ocr")
    spec = ocr_builtins(tmp)[0].spec
    limited = spec.model_copy(
        update={
            "name": LIMITED,
            "limits": spec.limits.model_copy(
                update={"max_image_pixels": 100_000, "max_image_bytes": 50_000}
            ),
        }
    )
    with run_server(tmp, [spec, limited]) as url:
        yield url


@pytest.fixture(scope="module")
def engine():
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR()


def ocr(server: str, image: bytes, model: str = OCR) -> httpx.Response:
    files = {"file": ("page.png", image, "image/png")}
    return httpx.post(f"{server}/v1/ocr", files=files, data={"model": model}, timeout=120)


@pytest.mark.parametrize("page", list(PAGES))
def test_lines_are_those_rapidocr_reads_in_process(server, engine, page):
    image = render(PAGES[page])
    found, _ = engine(image)
    answer = ocr(server, image).json()
    assert [line["text"] for line in answer["lines"]] == [text for _, text, _ in found]
    assert [line["text"] for line in answer["lines"]] == PAGES[page]
    assert answer["text"] == "\n".join(PAGES[page])
    for line, (box, _, score) in zip(answer["lines"], found, strict=True):
        assert line["box"] == [[float(x), float(y)] for x, y in box]
        assert line["confidence"] == pytest.approx(score) and line["confidence"] > 0.9
    assert answer["usage"] == {"images": 1} and answer["object"] == "ocr"


def test_json_with_a_data_url_or_base64_reads_the_same(server):
    image = render(PAGES["english"])
    encoded = base64.b64encode(image).decode()
    for form in (f"data:image/png;base64,{encoded}", encoded):
        r = httpx.post(f"{server}/v1/ocr", json={"model": OCR, "image": form}, timeout=120)
        assert r.status_code == 200, r.text
        assert r.json()["text"] == "\n".join(PAGES["english"])


def test_over_v2_as_a_binary_bytes_tensor(server):
    """Triton's way to send an image: an encoded file as a binary BYTES element."""
    import tritonclient.http as triton

    client = triton.InferenceServerClient(server.removeprefix("http://"))
    tensor = triton.InferInput("image", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([render(PAGES["chinese"])], dtype=object))
    answer = client.infer(OCR, [tensor]).as_numpy("result")[0]
    assert [line["text"] for line in json.loads(answer)["lines"]] == PAGES["chinese"]
    as_text = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["hi"]}]}
    r = httpx.post(f"{server}/v2/models/{OCR}/infer", json=as_text, timeout=60)
    assert r.status_code == 400, r.text


def test_a_user_model_registered_from_a_folder(server, tmp_path):
    import rapidocr_onnxruntime

    folder = tmp_path / "my-ocr"
    shutil.copytree(Path(rapidocr_onnxruntime.__file__).parent / "models", folder)
    spec = {"name": "my-ocr", "runtime": "ocr", "source": str(folder)}
    r = httpx.post(f"{server}/v1/admin/models?load=true", json=spec, timeout=180)
    assert r.status_code in (200, 201), r.text
    image = render(PAGES["chinese"])
    for _ in range(600):
        answer = ocr(server, image, "my-ocr")
        if answer.status_code != 503:
            break
    assert answer.json()["text"] == "\n".join(PAGES["chinese"])
    (folder / "ch_PP-OCRv4_det_infer.onnx").unlink()
    spec["name"] = "broken-ocr"
    r = httpx.post(f"{server}/v1/admin/models", json=spec, timeout=60)
    assert r.status_code == 400 and "no 'det' model" in r.json()["error"]["message"]


def test_refusals_name_the_problem_and_the_replica_keeps_serving(server):
    big = render(["x"] * 10)  # 900 x 780 pixels, about 9 kB
    cases = [
        (ocr(server, b"not an image"), 400, "not an image"),
        (ocr(server, big[: len(big) // 2]), 400, "truncated"),
        (ocr(server, big, LIMITED), 413, "max_image_pixels=100000"),
        (ocr(server, big + bytes(60_000), LIMITED), 413, "max_image_bytes=50000"),
        (httpx.post(f"{server}/v1/ocr", json={"model": OCR, "image": "%%%"}), 400, "base64"),
        (httpx.post(f"{server}/v1/ocr", files={"model": (None, OCR)}), 400, "'file'"),
    ]
    for response, status, words in cases:
        assert response.status_code == status, response.text
        assert words in response.json()["error"]["message"]
    assert ocr(server, render(PAGES["english"])).json()["text"] == "\n".join(PAGES["english"])
