"""Images through the real server: /v1/images/classifications (JSON and multipart), image
inputs of /v1/embeddings (httpx and the openai SDK), v2 BYTES tensors (tritonclient), limits
and bad files (413/400, the replica keeps serving), and a user vision model registered with
``aimass models add --runtime vision``.

One server for the module: the built-in EfficientNet-Lite0 classifier and embedder (exported
once into the module's home), a tiny text encoder (modality errors) and two tiny colour
classifiers registered through the CLI (NCHW/RGB and NHWC/BGR, one with small image limits).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from aimass.provision import builtin
from tests.conftest import ROOT, run_server
from tests.factories_text import tiny_encoder
from tests.factories_vision import (
    COLOURS,
    PHOTOS,
    SENSIBLE,
    data_url,
    make_colour_classifier,
    photo,
    png_bomb,
    reference_probabilities,
    solid,
)

CLASSIFY, EMBED = builtin.EFFICIENTNET, builtin.EFFICIENTNET_EMBED
RED = (250, 10, 10)


def cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "aimass", *args],
        env={**os.environ, "AIMASS_HOME": str(home)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


def add_colour_model(home: Path, folder: Path, name: str, *options: str) -> None:
    labels = folder / "colours.txt"
    labels.write_text("\n".join(COLOURS) + "\n")
    layout = "NHWC" if "layout=NHWC" in options else "NCHW"
    model = make_colour_classifier(folder / f"{name}.onnx", layout)
    flags = [f"--option={o}" for o in ("size=8", f"scale={1 / 255}", f"labels={labels}", *options)]
    done = cli(home, "models", "add", name, "--runtime", "vision", "--task", "classification",
               "--source", str(model), "--load", *flags)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("vision")
    home = root / "home"
    specs = [*(b.spec for b in builtin.efficientnet_classifier(home))]
    specs += [b.spec for b in builtin.efficientnet_embedder(home)]
    encoder = tiny_encoder(root / "encoder", max_length=16)
    specs.append({"name": "tiny-text", "task": "embedding", "runtime": "transformers",
                  "source": str(encoder)})  # fmt: skip
    add_colour_model(home, root, "colours-nhwc", "layout=NHWC", "channel_order=BGR")
    tiny = make_colour_classifier(root / "colours.onnx")
    specs.append({"name": "colours", "task": "classification", "runtime": "vision",
                  "source": str(tiny), "options": {"size": 8, "labels": COLOURS},
                  "limits": {"max_image_bytes": 1}})  # fmt: skip
    with run_server(root, specs) as url:
        yield url


def classify(url: str, model: str, images: list[bytes], top_k: int = 3) -> httpx.Response:
    body = {"model": model, "images": [{"image": data_url(i)} for i in images], "top_k": top_k}
    return httpx.post(f"{url}/v1/images/classifications", json=body, timeout=60)


def test_top1_on_real_photos_matches_the_in_process_model(server):
    images = [photo(name) for name in PHOTOS]
    answer = classify(server, CLASSIFY, images, top_k=3)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    expected = reference_probabilities(Path(server.home) / "models" / CLASSIFY / "1" /
                                       builtin.EFFICIENTNET_FILE, images)  # fmt: skip
    labels = builtin_labels()
    for name, item, want in zip(PHOTOS, body["data"], expected, strict=True):
        top = item["labels"][0]
        assert top["index"] == int(want.argmax()), (name, top, labels[int(want.argmax())])
        assert top["score"] == pytest.approx(float(want.max()), abs=1e-4)
        assert top["label"] == labels[top["index"]]
        if name in SENSIBLE:
            assert top["label"] in SENSIBLE[name], (name, top)
    assert body["usage"] == {"images": 4, "prompt_tokens": 4, "total_tokens": 4}
    assert [len(item["labels"]) for item in body["data"]] == [3] * 4


def builtin_labels() -> list[str]:
    path = Path(builtin.__file__).with_name("imagenet_labels.txt")
    return path.read_text().splitlines()


def test_multipart_files_are_classified_in_order(server):
    files = [("file", ("coffee.jpg", photo("coffee", "JPEG"), "image/jpeg")),
             ("file", ("cat.png", photo("chelsea"), "image/png"))]  # fmt: skip
    answer = httpx.post(f"{server}/v1/images/classifications", files=files,
                        data={"model": CLASSIFY, "top_k": "2"}, timeout=60)  # fmt: skip
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert [d["index"] for d in data] == [0, 1]
    assert data[0]["labels"][0]["label"] in SENSIBLE["coffee"]
    assert data[1]["labels"][0]["label"] in SENSIBLE["chelsea"]
    assert all(len(d["labels"]) == 2 for d in data)


def test_image_embeddings_with_httpx_and_the_openai_sdk(server):
    from openai import OpenAI

    images = [photo("coffee"), photo("chelsea"), photo("coffee", "JPEG")]
    inputs = [{"image": data_url(i)} for i in images]
    answer = httpx.post(f"{server}/v1/embeddings", json={"model": EMBED, "input": inputs})
    assert answer.status_code == 200, answer.text
    vectors = np.array([d["embedding"] for d in answer.json()["data"]])
    assert vectors.shape == (3, 1280)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    same, other = vectors[0] @ vectors[2], vectors[0] @ vectors[1]
    assert same > 0.95 > other  # PNG and JPEG of one photo are near; another photo is not
    assert answer.json()["usage"] == {"prompt_tokens": 3, "total_tokens": 3}

    client = OpenAI(base_url=f"{server}/v1", api_key="unused")
    sdk = client.embeddings.create(model=EMBED, input=inputs)  # the SDK asks for base64
    assert np.allclose([d.embedding for d in sdk.data], vectors, atol=1e-6)


def test_modality_mismatch_is_a_400_naming_it(server):
    image = [{"image": data_url(solid(RED))}]
    answer = httpx.post(f"{server}/v1/embeddings", json={"model": "tiny-text", "input": image})
    assert answer.status_code == 400 and "modality 'text'" in answer.text, answer.text
    answer = httpx.post(f"{server}/v1/embeddings", json={"model": EMBED, "input": ["a cat"]})
    assert answer.status_code == 400 and "modality 'image'" in answer.text, answer.text
    answer = classify(server, "tiny-text", [solid(RED)])
    assert answer.status_code == 400 and "modality 'text'" in answer.text, answer.text
    answer = classify(server, EMBED, [solid(RED)])
    assert answer.status_code == 400 and "task 'embedding'" in answer.text, answer.text


def test_v2_bytes_tensors_with_tritonclient(server):
    import tritonclient.http as triton

    client = triton.InferenceServerClient(server.removeprefix("http://"))
    meta = client.get_model_metadata(CLASSIFY)
    assert meta["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    images = [photo("coffee", "JPEG"), photo("chelsea")]
    tensor = triton.InferInput("image", [2], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=np.object_), binary_data=True)
    result = client.infer(CLASSIFY, [tensor])
    probabilities = result.as_numpy("probabilities")
    assert probabilities.dtype == np.float32 and probabilities.shape == (2, 1000)
    labels = builtin_labels()
    assert labels[int(probabilities[0].argmax())] in SENSIBLE["coffee"]
    assert labels[int(probabilities[1].argmax())] in SENSIBLE["chelsea"]
    top = triton.InferRequestedOutput("probabilities", class_count=3)  # classification extension
    classes = client.infer(CLASSIFY, [tensor], outputs=[top]).as_numpy("probabilities")
    assert classes.shape == (2, 3)
    score, index, label = classes[0, 0].decode().split(":")
    assert int(index) == int(probabilities[0].argmax()) and label == labels[int(index)]
    assert float(score) == pytest.approx(float(probabilities[0].max()), abs=1e-5)
    json_body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                             "data": [data_url(images[1])]}]}  # fmt: skip
    answer = httpx.post(f"{server}/v2/models/{EMBED}/infer", json=json_body, timeout=60)
    assert answer.status_code == 200, answer.text
    (output,) = answer.json()["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("embedding", "FP32", [1, 1280])


def test_user_vision_models_follow_their_preprocessing(server):
    answer = classify(server, "colours-nhwc", [solid(RED), solid((10, 10, 250))], top_k=1)
    assert answer.status_code == 200, answer.text
    # channel_order BGR swaps red and blue before the model sees them
    assert [d["labels"][0]["label"] for d in answer.json()["data"]] == ["blue", "red"]


def test_limits_and_bad_files_never_reach_a_5xx(server):
    answer = classify(server, "colours", [solid(RED)])
    assert answer.status_code == 413 and "max_image_bytes=1" in answer.text, answer.text
    bomb = httpx.post(f"{server}/v1/images/classifications", timeout=60,
                      files=[("file", ("bomb.png", png_bomb(), "image/png"))],
                      data={"model": "colours-nhwc"})  # fmt: skip
    assert bomb.status_code == 413 and "max_image_pixels" in bomb.text, bomb.text
    assert "before decoding" in bomb.text
    jpeg = photo("coffee", "JPEG")
    for bad, why in [(b"not an image", "not an image"), (jpeg[: len(jpeg) // 3], "truncated")]:
        answer = classify(server, CLASSIFY, [bad])
        assert answer.status_code == 400 and why in answer.text, answer.text
    answer = httpx.post(f"{server}/v1/images/classifications",
                        json={"model": CLASSIFY, "images": [{"image": "%%%"}]})  # fmt: skip
    assert answer.status_code == 400 and "images[0]" in answer.text, answer.text
    answer = classify(server, CLASSIFY, [photo("coffee")])
    assert answer.status_code == 200  # the replica kept serving


def test_a_bad_image_fails_only_its_own_request(server):
    import concurrent.futures

    good, bad = photo("chelsea"), b"\x89PNG\r\n\x1a\n garbage"
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: classify(server, CLASSIFY, [bad if i % 2 else good]),
                                range(8)))  # fmt: skip
    assert [a.status_code for a in answers] == [200, 400] * 4


def test_models_add_refuses_bad_vision_options(server, tmp_path):
    model = make_colour_classifier(tmp_path / "m.onnx")
    done = cli(Path(server.home), "models", "add", "bad", "--runtime", "vision",
               "--task", "classification", "--source", str(model),
               "--option", "layout=CHW")  # fmt: skip
    assert done.returncode != 0 and "options.layout" in done.stdout + done.stderr
    done = cli(Path(server.home), "models", "add", "bad", "--runtime", "vision",
               "--task", "classification", "--source", str(model),
               "--option", "size=16")  # fmt: skip
    assert done.returncode != 0 and "options.size" in done.stdout + done.stderr
