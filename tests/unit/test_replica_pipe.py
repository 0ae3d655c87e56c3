"""The replica's pipe: frames read a buffer at a time, and the worker's thread settings."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading

import pytest

from aimass.engine.local import frames
from aimass.engine.local.frames import FrameReader
from aimass.engine.local.worker import OMP_SPIN_COUNT, limit_threads


@pytest.fixture
def pipe():
    reader, writer = mp.Pipe(duplex=True)
    yield reader, writer
    reader.close()
    writer.close()


def test_every_message_already_in_the_pipe_comes_out_of_one_read(pipe):
    reader, writer = pipe
    sent = [b"", b"a", b"x" * 1000, bytes(range(256))]
    for message in sent:
        writer.send_bytes(message)
    assert FrameReader(reader.fileno()).read() == sent


def test_a_message_cut_across_reads_waits_for_its_rest(pipe, monkeypatch):
    monkeypatch.setattr(frames, "CHUNK", 7)  # 4 header bytes + 3 payload bytes per read
    reader, writer = pipe
    writer.send_bytes(b"0123456789")
    writer.send_bytes(b"ab")
    frames_of = FrameReader(reader.fileno())
    assert frames_of.read() == []
    assert frames_of.needed == 7
    assert frames_of.read() == [b"0123456789"]
    assert frames_of.read() == [b"ab"]


def test_a_message_larger_than_a_read_is_read_whole(pipe):
    reader, writer = pipe
    big = os.urandom(5 * frames.CHUNK + 3)
    sender = threading.Thread(target=writer.send_bytes, args=(big,))
    sender.start()
    frames_of, got = FrameReader(reader.fileno()), []
    while not got:
        got = frames_of.read()
    sender.join()
    assert got == [big]
    assert frames_of.buffer == bytearray()


def test_a_closed_pipe_reads_as_eof(pipe):
    reader, writer = pipe
    writer.close()
    with pytest.raises(EOFError):
        FrameReader(reader.fileno()).read()


@pytest.fixture
def thread_env(monkeypatch):
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.setenv(var, "0")
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    return monkeypatch


def test_a_replica_bounds_openmp_spinning(thread_env):
    limit_threads(2)
    assert os.environ["OMP_NUM_THREADS"] == "2"
    assert os.environ["GOMP_SPINCOUNT"] == str(OMP_SPIN_COUNT)


@pytest.mark.parametrize("var, value", [("GOMP_SPINCOUNT", "50"), ("OMP_WAIT_POLICY", "active")])
def test_an_operators_openmp_wait_setting_is_kept(thread_env, var, value):
    thread_env.setenv(var, value)
    limit_threads(2)
    assert os.environ[var] == value
    if var == "OMP_WAIT_POLICY":
        assert "GOMP_SPINCOUNT" not in os.environ
