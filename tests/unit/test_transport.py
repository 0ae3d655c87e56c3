"""One socket write per turn of the event loop (aimass/server/transport.py)."""

from __future__ import annotations

import asyncio

import httpx

from aimass.server.transport import GatheringTransport


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def write_eof(self) -> None:
        self.writes.append(b"<eof>")

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


async def test_writes_of_one_turn_leave_as_one_write_in_order():
    fake = FakeTransport()
    gathering = GatheringTransport(fake, asyncio.get_running_loop())
    gathering.write(b"HTTP/1.1 200 OK\r\n\r\n")
    gathering.write(b"")
    gathering.write(b"body")
    assert fake.writes == [] and gathering.get_write_buffer_size() == 23
    await asyncio.sleep(0)
    assert fake.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    gathering.write(b"next")
    await asyncio.sleep(0)
    assert fake.writes[-1] == b"next" and len(fake.writes) == 2
    assert gathering.get_extra_info("peername") == "info:peername"


async def test_close_sends_what_was_gathered_and_abort_drops_it():
    fake = FakeTransport()
    gathering = GatheringTransport(fake, asyncio.get_running_loop())
    gathering.writelines([b"last ", b"words"])
    gathering.write_eof()
    assert fake.writes == [b"last words", b"<eof>"]
    gathering.write(b"bye")
    gathering.close()
    assert fake.writes[-1] == b"bye" and fake.closed
    other = FakeTransport()
    gathering = GatheringTransport(other, asyncio.get_running_loop())
    gathering.write(b"never sent")
    gathering.abort()
    await asyncio.sleep(0)
    assert other.writes == [] and other.aborted


async def test_nothing_is_written_to_a_transport_that_closed_meanwhile():
    fake = FakeTransport()
    gathering = GatheringTransport(fake, asyncio.get_running_loop())
    gathering.write(b"too late")
    fake.closed = True  # the peer went away before the loop came round
    await asyncio.sleep(0)
    assert fake.writes == []


def test_the_server_answers_through_it(tmp_path):
    """A real server (``aimass serve`` uses the gathering protocol): plain answers, an
    error answer and a keep-alive connection reused for several requests."""
    from tests.conftest import run_server

    with run_server(tmp_path) as server, httpx.Client(base_url=str(server)) as client:
        for _ in range(3):
            assert client.get("/health").status_code == 200
        missing = client.post("/v1/embeddings", json={"model": "nope", "input": "x"})
        assert missing.status_code == 404 and "nope" in missing.text
