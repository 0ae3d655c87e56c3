"""The web console (``/ui``) in headless Chromium, driven by Playwright, against a real server.

One server per module (built-in Gemma for the chat stream, a tiny encoder for embeddings),
keys required. The admin journey signs in, loads a model, streams a chat answer, embeds two
sentences, creates and revokes a key, watches usage and a metric chart move; every request
the browser makes is recorded and must stay on 127.0.0.1, and no key may show up in a URL, a
page the server sent, or the server's log. Screenshots of each page go to
``$AIMASS_CONSOLE_SCREENSHOTS`` (default: a pytest temporary folder).
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
from tests.conftest import run_server
from tests.factories_text import tiny_encoder
from tests.integration.conftest_llm import gemma_file, llm_spec

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
ADMIN_PAGES = ["/ui/models", "/ui/keys", "/ui/audit"]
PAGES = [*ADMIN_PAGES, "/ui/playground", "/ui/usage", "/ui/jobs", "/ui/metrics"]
SENTENCES = "A cat sits on the mat.\nA kitten rests on a rug."

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} is missing (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def console(tmp_path_factory, request):
    tmp = tmp_path_factory.mktemp("console")
    encoder = tiny_encoder(tmp / "encoder", max_length=64)
    gemma = llm_spec(gemma_file(request.config), options={"n_ctx_per_seq": 256})
    with run_server(tmp, [gemma], extra_args=["--require-auth"]) as srv:
        url = f"sqlite:///{srv.home / 'aimass.db'}"
        _, admin = keys.create_key(url, "root", admin=True)
        _, user = keys.create_key(url, "user")
        spec = {"name": "tiny", "task": "embedding", "runtime": "transformers",
                "source": str(encoder)}  # fmt: skip
        r = httpx.post(f"{srv}/v1/admin/models", json=spec, headers=_bearer(admin), timeout=60)
        assert r.status_code == 200, r.text
        yield {"server": srv, "admin": admin, "user": user, "secrets": [admin, user]}


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
    for path in ("/ui/usage", "/ui/jobs", "/ui/metrics"):
        assert page.goto(base + path).status == 200, path
    assert page.locator('nav a[href="/ui/keys"]').count() == 0
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
