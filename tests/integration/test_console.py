"""The web console (``/ui``) in headless Chromium, driven by Playwright, against a real server.

One server per module (built-in Gemma for the chat stream, a tiny encoder for embeddings and
vector stores, small risk, recommender and forecaster models), keys required. The admin journey
signs in, loads a model, streams a chat answer, embeds two sentences, creates and revokes a key,
watches usage and a metric chart move; a user key builds a vector store, uploads to it and
searches it, and asks the playground for recommendations and a forecast; an admin filters and
acknowledges risk alerts. Every request the browser makes is recorded and must stay on
127.0.0.1, and no key may show up in a URL, a page the server sent, or the server's log.
Screenshots of each page go to ``$AIMASS_CONSOLE_SCREENSHOTS`` (default: a pytest temporary
folder).
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest

from aimass.registry import keys
from aimass.scenarios.risk.train import check_params, train
from tests.conftest import run_server
from tests.factories_risk import transactions
from tests.factories_text import tiny_encoder
from tests.integration.conftest_llm import gemma_file, llm_spec
from tests.integration.conftest_scenarios import tiny_forecaster, tiny_recommender

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
ADMIN_PAGES = ["/ui/models", "/ui/keys", "/ui/audit", "/ui/alerts"]
USER_PAGES = ["/ui/usage", "/ui/jobs", "/ui/metrics", "/ui/stores"]
PAGES = [*ADMIN_PAGES, "/ui/playground", *USER_PAGES]
SENTENCES = "A cat sits on the mat.\nA kitten rests on a rug."
ANIMALS = b"the zebra and the giraffe live on the savanna. lions hunt the zebra at night."

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} is missing (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def console(tmp_path_factory, request):
    tmp = tmp_path_factory.mktemp("console")
    encoder = tiny_encoder(tmp / "encoder", max_length=64)
    gemma = llm_spec(gemma_file(request.config), options={"n_ctx_per_seq": 256})
    events = transactions(320, seed=4)
    train(events[:300], None, check_params({"entities": ["card"], "n_estimators": 5}), tmp / "risk")
    fraud = {"name": "fraud", "runtime": "risk", "source": str(tmp / "risk"), "trust_pickle": True}
    shop = {"name": "shop", "runtime": "recommend", "source": str(tiny_recommender(tmp / "rec"))}
    demand = {"name": "demand", "runtime": "forecast", "trust_pickle": True,
              "source": str(tiny_forecaster(tmp / "forecast"))}  # fmt: skip
    models = [gemma, fraud, shop, demand]
    with run_server(tmp, models, extra_args=["--require-auth"]) as srv:
        url = f"sqlite:///{srv.home / 'aimass.db'}"
        _, admin = keys.create_key(url, "root", admin=True)
        _, user = keys.create_key(url, "user")
        spec = {"name": "tiny", "task": "embedding", "runtime": "transformers",
                "source": str(encoder)}  # fmt: skip
        r = httpx.post(f"{srv}/v1/admin/models", json=spec, headers=_bearer(admin), timeout=60)
        assert r.status_code == 200, r.text
        yield {"server": srv, "admin": admin, "user": user, "secrets": [admin, user],
               "events": events[300:], "shop": tmp / "rec" / "data"}  # fmt: skip


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = os.environ.get("AIMASS_CONSOLE_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield chromium
        chromium.close()


class Recorder:
    """Every request a browser context makes, and every HTML page the server sent it."""

    def __init__(self, context) -> None:
        self.urls: list[str] = []
        self.html: list[str] = []
        context.on("request", lambda req: self.urls.append(req.url))
        context.on("response", self._response)

    def _response(self, response) -> None:
        if "text/html" in response.headers.get("content-type", ""):
            try:
                self.html.append(response.text())
            except sync_api.Error:  # a page navigated away before its body was read
                pass

    def assert_clean(self, secrets: list[str]) -> None:
        assert self.urls
        hosts = {urlsplit(u).hostname for u in self.urls if not u.startswith(("data:", "about:"))}
        assert hosts == {"127.0.0.1"}, hosts
        for secret in secrets:
            assert not any(secret in u for u in self.urls)
            assert not any(secret in h for h in self.html)


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _new_page(browser, width: int = 1280, height: int = 860):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    return context, page, Recorder(context)


def _sign_in(page, base: str, key: str) -> None:
    page.goto(f"{base}/ui/login")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/ui/(models|playground)$"))


def _embed(base: str, key: str, texts: list[str]) -> np.ndarray:
    body = {"model": "tiny", "input": texts}
    r = httpx.post(f"{base}/v1/embeddings", json=body, headers=_bearer(key))
    return np.array([d["embedding"] for d in r.json()["data"]])


def _usage_total(page, base: str) -> int:
    page.goto(f"{base}/ui/usage")
    return sum(int(t) for t in page.locator("#usage td.requests").all_inner_texts())


def test_without_a_session_every_page_shows_the_sign_in_form(console, browser, shots):
    base = console["server"]
    context, page, recorder = _new_page(browser)
    for path in PAGES:
        page.goto(base + path)
        assert page.url == f"{base}/ui/login"
    page.get_by_label("API key").fill("not-a-key")
    page.get_by_role("button", name="Sign in").click()
    assert "invalid API key" in page.get_by_role("alert").inner_text()
    page.keyboard.press("Tab")  # from the key field (focused on load) to its button
    assert page.evaluate("document.activeElement.textContent") == "Sign in"
    page.screenshot(path=shots / "sign-in.png")
    recorder.assert_clean(console["secrets"])
    context.close()


def test_admin_journey(console, browser, shots):
    base, admin = console["server"], console["admin"]
    context, page, recorder = _new_page(browser)
    _sign_in(page, base, admin)
    page.keyboard.press("Tab")  # the first stop is the link past the navigation
    assert page.evaluate("document.activeElement.className") == "skip"

    # load a model
    row = page.locator('tr[data-model="tiny"]')
    assert row.locator(".state").inner_text() != "ready"
    row.get_by_role("button", name="Load tiny version 1", exact=True).click()
    sync_api.expect(page.locator('tr[data-model="tiny"] .state')).to_have_text(
        "ready", timeout=90_000
    )
    page.screenshot(path=shots / "models.png", full_page=True)
    usage_before = _usage_total(page, base)

    # stream a chat answer: the text grows piece by piece before the answer is done
    page.goto(f"{base}/ui/playground")
    chat = page.locator("#chat")
    chat.get_by_label("Model").select_option("gemma")
    chat.get_by_label("Message").fill("Tell me a short story about a boat.")
    chat.get_by_label("Max tokens").fill("48")
    chat.get_by_role("button", name="Send").click()
    answer = page.locator("#chat-answer")
    lengths = set()
    deadline = time.monotonic() + 120
    while answer.get_attribute("data-done") is None and time.monotonic() < deadline:
        lengths.add(len(answer.inner_text()))
        time.sleep(0.02)
    assert answer.get_attribute("data-done") == "true"
    assert "error" not in (answer.get_attribute("class") or "")
    assert len(answer.inner_text()) > 0 and len(lengths - {0}) >= 2, lengths
    assert "$AIMASS_API_KEY" in chat.locator(".curl").text_content()
    assert "client.chat.completions.create" in chat.locator(".python").text_content()

    # embed two sentences: dimension and their similarity
    embed = page.locator("#embeddings")
    embed.get_by_label("Model").select_option("tiny")
    embed.get_by_label("Inputs, one per line").fill(SENTENCES)
    embed.get_by_role("button", name="Embed").click()
    sync_api.expect(page.locator("#embeddings-answer")).to_contain_text("similarity(1, 2) = ")
    vectors = _embed(base, admin, SENTENCES.splitlines())
    cosine = vectors[0] @ vectors[1] / np.linalg.norm(vectors[0]) / np.linalg.norm(vectors[1])
    shown = page.locator("#embeddings-answer").inner_text()
    assert f"2 vectors of dimension {vectors.shape[1]}" in shown
    assert f"similarity(1, 2) = {cosine:.4f}" in shown
    page.locator("#chat").scroll_into_view_if_needed()
    page.screenshot(path=shots / "playground.png", full_page=True)

    # usage moves
    deadline = time.monotonic() + 30
    while _usage_total(page, base) < usage_before + 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _usage_total(page, base) >= usage_before + 2
    page.screenshot(path=shots / "usage.png", full_page=True)

    # create a key (shown once), use it, revoke it
    page.goto(f"{base}/ui/keys")
    page.get_by_label("Name").fill("temp")
    page.get_by_label("Requests per minute (empty: no limit)").fill("100")
    page.get_by_role("button", name="Create key").click()
    shown = page.get_by_label("The new key")
    sync_api.expect(shown).not_to_be_empty()
    temp = shown.inner_text().strip()
    console["secrets"].append(temp)
    sync_api.expect(page.locator('tr[data-key="temp"] .state')).to_have_text("active")
    assert httpx.get(f"{base}/v1/models", headers=_bearer(temp)).status_code == 200
    page.screenshot(path=shots / "keys.png", full_page=True)
    page.get_by_role("button", name="Revoke temp").click()
    sync_api.expect(page.locator('tr[data-key="temp"] .state')).to_have_text("revoked")
    deadline = time.monotonic() + 15
    while httpx.get(f"{base}/v1/models", headers=_bearer(temp)).status_code != 401:
        assert time.monotonic() < deadline, "the revoked key still works"
        time.sleep(0.5)

    page.goto(f"{base}/ui/audit?action=key.revoke")
    sync_api.expect(page.locator("#audit tbody")).to_contain_text("temp")
    page.screenshot(path=shots / "audit.png", full_page=True)
    page.goto(f"{base}/ui/jobs")
    page.screenshot(path=shots / "jobs.png", full_page=True)
    _metric_chart_updates(page, base, admin, shots)

    # phone width: nothing but the tables' own scroll boxes is wider than the screen
    page.set_viewport_size({"width": 390, "height": 844})
    for path in ("/ui/models", "/ui/playground", "/ui/metrics"):
        page.goto(base + path)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), path
    page.screenshot(path=shots / "metrics-phone.png", full_page=True)

    page.set_viewport_size({"width": 1280, "height": 860})
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{base}/ui/login")
    page.goto(f"{base}/ui/keys")
    assert page.url == f"{base}/ui/login"
    recorder.assert_clean(console["secrets"])
    context.close()


def _metric_chart_updates(page, base: str, admin: str, shots: Path) -> None:
    """The requests/s chart shows traffic sent while the page is open, without a reload."""
    page.goto(f"{base}/ui/metrics")
    rps = page.locator('figure[data-metric="rps"]')
    sync_api.expect(rps.locator(".now")).to_contain_text("now:")
    stop = threading.Event()

    def traffic() -> None:
        body = {"model": "tiny", "input": ["traffic"]}
        with httpx.Client(headers=_bearer(admin)) as client:
            while not stop.is_set():
                client.post(f"{base}/v1/embeddings", json=body)
                time.sleep(0.05)

    sender = threading.Thread(target=traffic)
    sender.start()
    try:
        first = page.locator("#charts").get_attribute("data-updated")
        deadline = time.monotonic() + 30
        while not re.search(r"now: [1-9]", rps.locator(".now").inner_text()):
            assert time.monotonic() < deadline, rps.locator(".now").inner_text()
            time.sleep(0.2)
    finally:
        stop.set()
        sender.join()
    assert page.locator("#charts").get_attribute("data-updated") != first
    assert "L" in rps.locator("path").first.get_attribute("d")
    page.screenshot(path=shots / "metrics.png", full_page=True)


def test_a_user_key_gets_no_admin_page(console, browser):
    base = console["server"]
    context, page, recorder = _new_page(browser)
    _sign_in(page, base, console["user"])
    assert page.url == f"{base}/ui/playground"
    for path in ADMIN_PAGES:
        response = page.goto(base + path)
        assert response.status == 403, path
        assert "needs an admin API key" in page.get_by_role("alert").inner_text()
    for path in USER_PAGES:
        assert page.goto(base + path).status == 200, path
    assert page.locator('nav a[href="/ui/keys"]').count() == 0
    assert page.locator('nav a[href="/ui/alerts"]').count() == 0
    recorder.assert_clean(console["secrets"])
    context.close()


def _loaded(base: str, admin: str, model: str) -> None:
    """Load ``model`` through the API unless it is ready (the admin journey loads it)."""
    if httpx.get(f"{base}/v2/models/{model}/ready", headers=_bearer(admin)).status_code == 200:
        return
    r = httpx.post(f"{base}/v2/repository/models/{model}/load", headers=_bearer(admin), timeout=90)
    assert r.status_code == 200, r.text


def _fits_a_phone(page) -> bool:
    """Nothing but the tables' own scroll boxes is wider than a phone's screen."""
    page.set_viewport_size({"width": 390, "height": 844})
    fits = page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.set_viewport_size({"width": 1280, "height": 860})
    return fits


def _store_files_settle(page, store_url: str) -> None:
    deadline = time.monotonic() + 60
    page.goto(store_url)
    while page.locator("#files td.status", has_text="in_progress").count():
        assert time.monotonic() < deadline, page.locator("#files").inner_text()
        time.sleep(0.3)
        page.goto(store_url)


def test_a_user_key_builds_searches_and_sees_only_its_own_stores(console, browser, shots):
    base, admin, user = console["server"], console["admin"], console["user"]
    _loaded(base, admin, "tiny")
    theirs = httpx.post(f"{base}/v1/vector_stores", headers=_bearer(admin),
                        json={"name": "admins-only", "embedding_model": "tiny"}).json()  # fmt: skip
    context, page, recorder = _new_page(browser)
    _sign_in(page, base, user)
    page.get_by_role("link", name="Stores").click()
    assert page.locator(f'tr[data-store="{theirs["id"]}"]').count() == 0
    page.get_by_label("Name").fill("notes")
    page.get_by_label("Embedding model (empty: the server's default)").fill("tiny")
    page.get_by_role("button", name="Create store").click()
    page.get_by_role("link", name="notes").click()
    store_url = page.url
    store_id = store_url.rsplit("/", 1)[1]

    # upload and add a text file and one with no text in it
    attach = page.locator("#attach")
    for name, data in (("animals.txt", ANIMALS), ("blob.bin", b"\x00\x01\x02binary")):
        attach.get_by_label("File", exact=False).set_input_files(
            {"name": name, "mimeType": "application/octet-stream", "buffer": data}
        )
        attach.get_by_role("button", name="Upload and add").click()
        sync_api.expect(page.locator("#attach-answer")).to_contain_text(f"{name} uploaded as")
    _store_files_settle(page, store_url)
    api = httpx.get(f"{base}/v1/vector_stores/{store_id}/files", headers=_bearer(user)).json()
    assert len(api["data"]) == 2
    for f in api["data"]:
        row = page.locator(f'tr[data-file="{f["id"]}"]')
        assert row.locator(".status").inner_text() == f["status"]
        if f["status"] == "failed":
            error = f["last_error"]
            assert row.locator(".last-error").inner_text() == f"{error['code']}: {error['message']}"
    assert sorted(f["status"] for f in api["data"]) == ["completed", "failed"]

    # search: the same hits, scores and text as the API gives
    search = page.locator("#search")
    search.get_by_label("Query").fill("zebra giraffe")
    search.get_by_role("button", name="Search").click()
    hits = page.locator("#search-hits tbody tr")
    sync_api.expect(hits.first).to_be_visible()
    body = {"query": "zebra giraffe", "search_mode": "hybrid", "max_num_results": 10}
    want = httpx.post(f"{base}/v1/vector_stores/{store_id}/search", json=body,
                      headers=_bearer(user)).json()["data"]  # fmt: skip
    shown = [[c.inner_text() for c in hits.nth(i).locator("th, td").all()]
             for i in range(hits.count())]  # fmt: skip
    assert shown == [[h["filename"], f"{h['score']:.4f}", h["content"][0]["text"]] for h in want]
    assert shown[0][0] == "animals.txt" and "zebra" in shown[0][2]
    page.screenshot(path=shots / "store.png", full_page=True)
    assert _fits_a_phone(page)

    # the listing: counts and bytes as the API has them; another key's store is not there
    page.goto(f"{base}/ui/stores")
    mine = httpx.get(f"{base}/v1/vector_stores/{store_id}", headers=_bearer(user)).json()
    row = page.locator(f'tr[data-store="{store_id}"]')
    assert row.locator(".counts").inner_text() == "1 completed, 0 in progress, 1 failed (2)"
    assert row.locator(".bytes").get_attribute("data-bytes") == str(mine["usage_bytes"])
    assert page.locator(f'tr[data-store="{theirs["id"]}"]').count() == 0
    page.screenshot(path=shots / "stores.png", full_page=True)
    assert page.goto(f"{base}/ui/stores/{theirs['id']}").status == 404
    assert "no vector store" in page.get_by_role("alert").inner_text()
    recorder.assert_clean(console["secrets"])
    context.close()

    context, page, recorder = _new_page(browser)  # an admin key sees every store, as the API
    _sign_in(page, base, admin)
    page.goto(f"{base}/ui/stores")
    for found in (store_id, theirs["id"]):
        sync_api.expect(page.locator(f'tr[data-store="{found}"]')).to_have_count(1)
    assert page.goto(f"{base}/ui/stores/{store_id}").status == 200
    recorder.assert_clean(console["secrets"])
    context.close()


def test_risk_alerts_are_listed_filtered_and_acknowledged_by_admins_only(console, browser, shots):
    base, admin = console["server"], console["admin"]
    block_all = [{"name": "all", "when": "amount > 0", "action": "block"}]
    with httpx.Client(base_url=str(base), headers=_bearer(admin), timeout=30) as c:
        assert c.put("/v1/risk/models/fraud/rules", json={"rules": block_all}).status_code == 200
        ids = [c.post("/v1/risk/score", json={"model": "fraud", "event": e}).json()["alert_id"]
               for e in console["events"][:3]]  # fmt: skip
    assert all(ids), ids
    context, page, recorder = _new_page(browser)
    _sign_in(page, base, admin)
    page.get_by_role("link", name="Alerts").click()
    page.get_by_label("Model").fill("fraud")
    page.get_by_label("Decision").select_option("block")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"decision=block"))
    query = {"model": "fraud", "decision": "block", "limit": 100, "order": "desc"}
    listed = httpx.get(f"{base}/v1/risk/alerts", params=query, headers=_bearer(admin)).json()
    shown = page.locator("#alerts tbody tr").evaluate_all("rows => rows.map(r => r.dataset.alert)")
    assert shown == [str(a["id"]) for a in listed["data"]]  # newest first
    for alert in listed["data"]:
        row = page.locator(f'tr[data-alert="{alert["id"]}"]')
        assert row.locator(".decision").inner_text() == "block"
        assert row.locator(".score").inner_text() == f"{alert['score']:.4f}"
        assert "rules: all" in row.locator(".why").inner_text()
        for top in alert["top_features"]:
            assert top["name"] in row.locator(".why").inner_text()
    assert {a["id"] for a in listed["data"]} >= set(ids)

    page.get_by_role("button", name=f"Acknowledge alert {ids[0]}").click()
    sync_api.expect(page.locator(f'tr[data-alert="{ids[0]}"] .acked')).to_contain_text("by root")
    page.screenshot(path=shots / "alerts.png", full_page=True)
    assert _fits_a_phone(page)
    unacked = httpx.get(f"{base}/v1/risk/alerts", params={"acked": "false", "limit": 100},
                        headers=_bearer(admin)).json()["data"]  # fmt: skip
    assert ids[0] not in {a["id"] for a in unacked}
    page.get_by_label("Acknowledged").select_option("no")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"acked=no"))
    sync_api.expect(page.locator(f'tr[data-alert="{ids[1]}"]')).to_have_count(1)
    assert page.locator(f'tr[data-alert="{ids[0]}"]').count() == 0
    recorder.assert_clean(console["secrets"])
    context.close()

    context, page, recorder = _new_page(browser)  # a user key may neither see nor acknowledge
    _sign_in(page, base, console["user"])
    assert page.goto(f"{base}/ui/alerts").status == 403
    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
    r = page.request.post(
        f"{base}/ui/api/v1/risk/alerts/{ids[1]}/ack", headers={"x-csrf-token": csrf}
    )
    assert (r.status, r.json()["error"]["code"]) == (403, "admin_required"), r.text()
    context.close()


def _table(page, section: str) -> list[list[str]]:
    rows = page.locator(f"#{section}-hits tbody tr")
    sync_api.expect(rows.first).to_be_visible()
    return [[c.inner_text() for c in rows.nth(i).locator("th, td").all()]
            for i in range(rows.count())]  # fmt: skip


def test_playground_recommends_and_forecasts_as_tables(console, browser, shots):
    base, user = console["server"], console["user"]
    shopper = (console["shop"] / "interactions.csv").read_text().splitlines()[1].split(",")[0]
    context, page, recorder = _new_page(browser)
    _sign_in(page, base, user)
    recommend = page.locator("#recommend")
    recommend.get_by_label("Model").select_option("shop")
    recommend.get_by_label("User id").fill(shopper)
    recommend.get_by_label("Items").fill("5")
    recommend.get_by_role("button", name="Recommend").click()
    shown = _table(page, "recommend")
    body = {"model": "shop", "user": shopper, "n": 5}
    want = httpx.post(f"{base}/v1/recommendations", json=body, headers=_bearer(user)).json()
    assert shown == [
        [str(i + 1), d["item"], f"{d['score']:.4f}"] for i, d in enumerate(want["data"])
    ]
    assert len(shown) == 5 and want["fallback"] is None

    forecast = page.locator("#forecast")
    forecast.get_by_label("Model").select_option("demand")
    forecast.get_by_label("Series id").fill("sku-0000")
    forecast.get_by_label("Horizon (points ahead)").fill("5")
    forecast.get_by_role("button", name="Forecast").click()
    shown = _table(page, "forecast")
    body = {"model": "demand", "series_id": "sku-0000", "horizon": 5}
    want = httpx.post(f"{base}/v1/forecasts", json=body, headers=_bearer(user)).json()
    assert [row[1] for row in shown] == [f"{m:.3f}" for m in want["mean"]]
    low, high = want["intervals"]["80"]["lo"][0], want["intervals"]["80"]["hi"][0]
    assert shown[0][2] == f"{low:.3f} – {high:.3f}"
    page.locator("#recommend").scroll_into_view_if_needed()
    page.screenshot(path=shots / "playground-scenarios.png", full_page=True)
    recorder.assert_clean(console["secrets"])
    context.close()


def _session(base: str, key: str) -> httpx.Client:
    """A plain HTTP client signed in through the form, as a browser would be."""
    client = httpx.Client(base_url=base, follow_redirects=False)
    form = client.get("/ui/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    r = client.post("/ui/login", data={"key": key, "csrf_token": token})
    assert r.status_code == 303, r.text
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    return client


def test_every_form_carries_the_csrf_token_and_none_works_without_it(console):
    base = console["server"]
    client = _session(base, console["admin"])
    token = None
    for path in PAGES:
        html = client.get(path).text
        token = re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)
        for form in re.findall(r"<form\b[^>]*>.*?</form>", html, flags=re.S):
            if 'method="get"' in form:
                continue
            assert f'name="csrf_token" value="{token}"' in form, (path, form[:200])
            action = re.search(r'data-(?:api|play)="([^"]+)"', form)
            assert action, form[:200]
    actions = [
        ("POST", "/ui/api/v1/keys", {"name": "forged", "admin": True}),
        ("DELETE", "/ui/api/v1/keys/user", None),
        ("POST", "/ui/api/v2/repository/models/tiny/unload", {}),
        ("POST", "/ui/api/v1/admin/models/tiny/promote", {"version": 1}),
        ("POST", "/ui/api/v1/embeddings", {"model": "tiny", "input": "x"}),
        ("POST", "/ui/api/v1/vector_stores", {"name": "forged"}),
        ("POST", "/ui/api/v1/risk/alerts/1/ack", None),
        ("POST", "/ui/logout", None),
    ]
    for method, path, body in actions:
        for headers in ({}, {"x-csrf-token": "wrong"}):
            r = client.request(method, path, json=body, headers=headers)
            assert r.status_code == 403, (method, path, r.text)
            assert r.json()["error"]["code"] == "csrf_token_invalid"
    ok = client.post("/ui/api/v1/keys", json={"name": "made-here"}, headers={"x-csrf-token": token})
    assert ok.status_code == 200, ok.text
    console["secrets"].append(ok.json()["key"])
    listed = httpx.get(f"{base}/v1/keys", headers=_bearer(console["admin"])).json()["data"]
    assert "forged" not in [k["name"] for k in listed]
    # a sign-in posted from elsewhere lacks the form's token (double submit): no session
    forged = httpx.post(f"{base}/ui/login", data={"key": console["admin"]})
    assert forged.status_code == 403
    assert "aimass_session" not in forged.headers.get("set-cookie", "")
    client.close()


def test_no_key_in_the_server_log(console):
    log = console["server"].log()
    for secret in console["secrets"]:
        assert secret not in log
