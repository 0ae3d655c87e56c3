"""/v1/files on a real server with access control on, driven by the official ``openai`` SDK:
upload, list with pagination, retrieve, content, delete; ownership between two keys and an
admin; the size limit; a crash's leftovers swept; the CLI."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from aimass.registry import audit, keys
from tests.conftest import ROOT, run_server

LIMIT = 4096
ENV = {"AIMASS_MAX_FILE_BYTES": str(LIMIT), "AIMASS_AUTH_FAILURE_DELAY_S": "0"}


def aimass(home: Path, *args: str, key: str, server: str):
    env = {**os.environ, "AIMASS_HOME": str(home), "AIMASS_API_KEY": key}
    return subprocess.run(
        [sys.executable, "-m", "aimass", *args, "--url", server],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("files")
    home = tmp / "home"
    home.mkdir()
    url = f"sqlite:///{home / 'aimass.db'}"
    _, admin = keys.create_key(url, "admin", admin=True)
    _, alice = keys.create_key(url, "alice")
    _, bob = keys.create_key(url, "bob")
    with run_server(tmp, [], extra_args=["--require-auth"], env=ENV) as srv:
        yield {"base": str(srv), "home": home, "url": url, "admin": admin, "alice": alice,
               "bob": bob}  # fmt: skip


def client(env, who: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{env['base']}/v1", api_key=env[who], max_retries=0)


def test_the_sdk_uploads_lists_retrieves_reads_and_deletes(env):
    alice = client(env, "alice")
    data = b'{"custom_id": "1", "method": "POST", "url": "/v1/embeddings"}\n'
    made = alice.files.create(file=("in.jsonl", data), purpose="batch")
    assert made.id.startswith("file-") and len(made.id) == 29
    assert (made.object, made.bytes, made.filename, made.purpose, made.status) == (
        "file", len(data), "in.jsonl", "batch", "processed")  # fmt: skip
    assert abs(made.created_at - time.time()) < 60
    assert alice.files.retrieve(made.id) == made
    assert alice.files.content(made.id).content == data
    assert made.id in [f.id for f in alice.files.list(purpose="batch")]
    assert made.id not in [f.id for f in alice.files.list(purpose="vision")]
    gone = alice.files.delete(made.id)
    assert (gone.id, gone.deleted) == (made.id, True)
    with pytest.raises(openai.NotFoundError):
        alice.files.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        alice.files.delete(made.id)


def test_bytes_are_stored_whole_with_their_sha256(env):
    alice = client(env, "alice")
    data = os.urandom(LIMIT)  # exactly the limit is allowed
    made = alice.files.create(file=("blob.bin", data), purpose="user_data")
    shard = env["home"] / "files" / made.id[5:7] / made.id
    assert shard.read_bytes() == data
    from aimass.registry import files as rows

    row = rows.get(env["url"], made.id, rows.ANY_OWNER)
    assert row.sha256 == hashlib.sha256(data).hexdigest() and row.owner == "alice"
    assert not list((env["home"] / "files" / ".tmp").iterdir())


def test_another_key_gets_404_and_an_admin_sees_every_file(env):
    alice, bob, admin = client(env, "alice"), client(env, "bob"), client(env, "admin")
    made = alice.files.create(file=("mine.txt", b"alice's notes"), purpose="assistants")
    for call in (bob.files.retrieve, bob.files.content, bob.files.delete):
        with pytest.raises(openai.NotFoundError):
            call(made.id)
    assert made.id not in [f.id for f in bob.files.list()]
    assert admin.files.retrieve(made.id).id == made.id
    assert made.id in [f.id for f in admin.files.list()]
    assert admin.files.content(made.id).content == b"alice's notes"
    admin.files.delete(made.id)
    assert audit.entries(env["url"], action="files.delete", limit=5)[0]["target"] == made.id


def test_a_file_over_max_file_bytes_is_a_413_naming_it_and_leaves_nothing(env):
    alice = client(env, "alice")
    before = alice.files.list().data
    with pytest.raises(openai.APIStatusError) as err:
        alice.files.create(file=("big.bin", b"x" * (LIMIT + 1)), purpose="user_data")
    assert err.value.status_code == 413
    assert "max_file_bytes" in err.value.message and err.value.body["param"] == "max_file_bytes"
    with pytest.raises(openai.APIStatusError) as err:  # far over: refused by its length
        alice.files.create(file=("huge.bin", b"x" * (LIMIT + 2**21)), purpose="user_data")
    assert err.value.status_code == 413 and "max_file_bytes" in err.value.message
    assert alice.files.list().data == before
    assert not list((env["home"] / "files" / ".tmp").iterdir())


def test_list_pages_with_after_limit_and_order(env):
    bob = client(env, "bob")
    made = [bob.files.create(file=(f"{i}.txt", b"%d" % i), purpose="vision").id for i in range(5)]
    page = bob.files.list(purpose="vision", limit=2, order="asc")
    assert [f.id for f in page.data] == made[:2] and page.has_more
    query = {"purpose": "vision", "limit": 2, "order": "asc"}
    auth = {"Authorization": f"Bearer {env['bob']}"}
    raw = httpx.get(f"{env['base']}/v1/files", params=query, headers=auth).json()
    assert (raw["first_id"], raw["last_id"], raw["has_more"]) == (made[0], made[1], True)
    assert [f.id for f in bob.files.list(purpose="vision", order="asc", limit=2)] == made
    assert [f.id for f in bob.files.list(purpose="vision", order="desc", limit=3)] == made[::-1]
    last = bob.files.list(purpose="vision", order="asc", after=made[3], limit=5)
    assert [f.id for f in last.data] == made[4:] and not last.has_more
    with pytest.raises(openai.NotFoundError) as err:  # after: another key's file
        client(env, "alice").files.list(after=made[0])
    assert err.value.body["param"] == "after"


@pytest.mark.parametrize(
    ("form", "files", "param"),
    [
        ({"purpose": "nope"}, {"file": ("a.txt", b"a")}, "purpose"),
        ({}, {"file": ("a.txt", b"a")}, "purpose"),
        ({"purpose": "batch"}, {}, "file"),
        ({"purpose": "batch", "expires_after[anchor]": "created_at",
          "expires_after[seconds]": "60"}, {"file": ("a.txt", b"a")}, "expires_after.seconds"),
    ],
)  # fmt: skip
def test_bad_uploads_are_400s_naming_the_field(env, form, files, param):
    answer = httpx.post(f"{env['base']}/v1/files", data=form, files=files or {"x": ("", b"")},
                        headers={"Authorization": f"Bearer {env['alice']}"})  # fmt: skip
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param


def test_expiry_is_reported_and_an_expired_file_is_gone(env):
    alice = client(env, "alice")
    made = alice.files.create(
        file=("short.txt", b"soon gone"),
        purpose="user_data",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert made.expires_at == made.created_at + 3600
    from sqlalchemy import update

    from aimass.registry.db import session_scope
    from aimass.registry.tables import FileRow, utcnow

    with session_scope(env["url"]) as s:
        s.execute(update(FileRow).where(FileRow.id == made.id).values(expires_at=utcnow()))
    with pytest.raises(openai.NotFoundError):
        alice.files.retrieve(made.id)


def test_the_cli_uploads_lists_shows_reads_and_deletes(env, tmp_path):
    src = tmp_path / "notes.md"
    src.write_text("# Notes\nfiles from the command line\n")
    run = dict(key=env["alice"], server=env["base"])
    up = aimass(env["home"], "files", "upload", str(src), "--purpose", "assistants", **run)
    assert up.returncode == 0, up.stderr
    file_id = up.stdout.strip().splitlines()[-1]
    assert file_id.startswith("file-")
    listed = aimass(env["home"], "files", "list", "--purpose", "assistants", **run)
    assert file_id in listed.stdout and "notes.md" in listed.stdout
    shown = aimass(env["home"], "files", "show", file_id, **run)
    assert '"filename": "notes.md"' in shown.stdout
    out = tmp_path / "copy.md"
    got = aimass(env["home"], "files", "content", file_id, "--output", str(out), **run)
    assert got.returncode == 0 and out.read_text() == src.read_text()
    gone = aimass(env["home"], "files", "delete", file_id, **run)
    assert gone.returncode == 0 and file_id in gone.stdout
    missing = aimass(env["home"], "files", "show", file_id, **run)
    assert missing.returncode != 0 and "no file" in missing.stderr


def test_a_chunked_upload_without_a_length_is_held_to_the_limit_as_it_streams(env):
    boundary = "b0undary"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode()  # fmt: skip

    def body(size: int):
        yield head
        for _ in range(size // 1024):
            yield b"x" * 1024
        yield f"\r\n--{boundary}--\r\n".encode()

    headers = {"Authorization": f"Bearer {env['alice']}",
               "Content-Type": f"multipart/form-data; boundary={boundary}"}  # fmt: skip
    ok = httpx.post(f"{env['base']}/v1/files", content=body(LIMIT), headers=headers)
    assert ok.status_code == 200 and ok.json()["bytes"] == LIMIT
    big = httpx.post(f"{env['base']}/v1/files", content=body(4 * 2**20), headers=headers)
    assert big.status_code == 413 and big.json()["error"]["param"] == "max_file_bytes"
    assert not list((env["home"] / "files" / ".tmp").iterdir())
