"""Image files in vector stores, through the real server and the official openai SDK: a text
query finds an image by its labels or by the text OCR reads on it, an image query finds the
nearest images (AI Mass's ``query_image``), and deleting an image takes it out of both.

One server: the built-in EfficientNet-Lite0 classifier and embedder, the built-in PP-OCRv4, and
a tiny text encoder as the stores' embedding model.
"""

from __future__ import annotations

import io

import httpx
import openai
import pytest
from PIL import Image

from aimass.provision import builtin
from tests.conftest import run_server
from tests.factories_text import tiny_encoder
from tests.factories_vision import FONT, SENSIBLE, data_url, photo, render
from tests.integration.test_vector_stores import wait_done

pytestmark = pytest.mark.skipif(FONT is None, reason="no font to render the OCR test page")

INVOICE = ["Invoice 2024-117: total due 1,250.00 USD", "Pay by bank transfer within 30 days."]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("store-images")
    home = tmp / "home"
    specs = [b.spec for b in builtin.efficientnet_classifier(home)]
    specs += [b.spec for b in builtin.efficientnet_embedder(home)]
    specs += [b.spec for b in builtin.ocr_builtins(home)]
    specs.append({"name": "tiny", "task": "embedding", "runtime": "transformers",
                  "source": str(tiny_encoder(tmp / "encoder", max_length=64))})  # fmt: skip
    with run_server(tmp, specs, env={"AIMASS_VECTOR_STORE_DEFAULT_MODEL": "tiny"}) as url:
        c = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        store = c.vector_stores.create(name="pictures")
        files = {
            "coffee.png": photo("coffee"),
            "chelsea.png": photo("chelsea"),
            "invoice.png": render(INVOICE),
        }
        ids = {
            name: c.files.create(file=(name, data), purpose="vision").id
            for name, data in files.items()
        }
        ids["notes.txt"] = c.files.create(
            file=("notes.txt", b"the quarterly report is due on friday"), purpose="assistants"
        ).id
        c.vector_stores.file_batches.create(store.id, file_ids=list(ids.values()))
        wait_done(c, store.id, timeout_s=240)
        yield {"url": str(url), "client": c, "store": store.id, "ids": ids}


def search(env, **body) -> httpx.Response:
    return httpx.post(f"{env['url']}/v1/vector_stores/{env['store']}/search", json=body, timeout=60)


def names(env, answer: httpx.Response) -> list[str]:
    assert answer.status_code == 200, answer.text
    by_id = {v: k for k, v in env["ids"].items()}
    return [by_id[r["file_id"]] for r in answer.json()["data"]]


def jpeg(data: bytes, scale: float) -> str:
    """The photo resized and re-encoded as JPEG: another file of the same picture."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    image = image.resize((int(image.width * scale), int(image.height * scale)))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=80)
    return data_url(buf.getvalue(), "image/jpeg")


def test_every_file_is_completed_and_the_store_names_its_image_model(env):
    c = env["client"]
    files = c.vector_stores.files.list(env["store"])
    assert {f.status for f in files.data} == {"completed"}
    store = httpx.get(f"{env['url']}/v1/vector_stores/{env['store']}").json()
    assert store["image_model"] == builtin.EFFICIENTNET_EMBED


def test_an_image_file_is_indexed_by_its_name_labels_and_text(env):
    c = env["client"]
    coffee = c.vector_stores.files.content(env["ids"]["coffee.png"], vector_store_id=env["store"])
    text = " ".join(part.text for part in coffee.data)
    assert "coffee.png" in text and any(label in text for label in SENSIBLE["coffee"])
    invoice = c.vector_stores.files.content(env["ids"]["invoice.png"], vector_store_id=env["store"])
    assert "Invoice 2024-117" in " ".join(part.text for part in invoice.data)


@pytest.mark.parametrize("mode", ["keyword", "hybrid"])
def test_text_queries_find_images_by_labels_and_by_ocr(env, mode):
    labels = " ".join(sorted(SENSIBLE["coffee"]))
    assert names(env, search(env, query=labels, search_mode=mode))[0] == "coffee.png"
    found = names(env, search(env, query="invoice total due bank transfer", search_mode=mode))
    assert found[0] == "invoice.png"


@pytest.mark.parametrize("picture", ["coffee", "chelsea"])
def test_an_image_query_finds_the_same_picture_first(env, picture):
    answer = search(env, query_image=jpeg(photo(picture), 0.5), max_num_results=3)
    found = names(env, answer)
    assert found[0] == f"{picture}.png"
    assert answer.json()["data"][0]["score"] > 0.8


def test_an_image_and_a_text_query_are_fused(env):
    """The best text match and the best image match both lead (each is first in its part)."""
    query = {"query": "quarterly report", "search_mode": "keyword"}
    found = names(env, search(env, **query, query_image=jpeg(photo("chelsea"), 1)))
    assert set(found[:2]) == {"notes.txt", "chelsea.png"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"max_num_results": 3}, None),
        ({"query_image": "data:image/png;base64,@@@"}, "query_image"),
        ({"query_image": data_url(b"not an image")}, None),
        ({"query_image": data_url(photo("coffee")), "rerank_model": "tiny"}, "rerank_model"),
    ],
)
def test_bad_image_queries_are_400(env, body, param):
    answer = search(env, **body)
    assert answer.status_code == 400, answer.text
    if param:
        assert answer.json()["error"]["param"] == param


def test_a_deleted_image_leaves_image_and_text_search(env, tmp_path):
    c = env["client"]
    extra = c.files.create(file=("second-cat.png", photo("chelsea")), purpose="vision").id
    c.vector_stores.files.create(env["store"], file_id=extra)
    wait_done(c, env["store"], timeout_s=120)
    env["ids"]["second-cat.png"] = extra
    query = jpeg(photo("chelsea"), 0.5)
    assert "second-cat.png" in names(env, search(env, query_image=query, max_num_results=2))
    c.vector_stores.files.delete(extra, vector_store_id=env["store"])
    assert "second-cat.png" not in names(env, search(env, query_image=query))
    assert "second-cat.png" not in names(env, search(env, query="second-cat.png"))
