"""The worker pipe's declared messages: plain MessagePack both ways, tensors that come back
equal, one error envelope, and a worker that answers what it cannot read instead of dying."""

from __future__ import annotations

import threading
from multiprocessing import Pipe

import msgspec
import numpy as np
import pytest

from aimass.engine.local import messages as m
from aimass.engine.local.worker import run_worker
from aimass.errors import (
    AdminRequired,
    DeadlineExceeded,
    InvalidInput,
    ModelFailed,
    QueueFull,
)
from aimass.spec import ModelSpec
from tests.conftest import make_add_model


def _objects(*items) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        array[i] = item
    return array


ARRAYS = {
    "fp32": np.arange(12, dtype=np.float32).reshape(3, 4),
    "fp16 column (not contiguous)": np.arange(12, dtype=np.float16).reshape(3, 4)[:, 1],
    "fp64 scalar": np.array(2.5),
    "int64 empty": np.zeros((0, 4), np.int64),
    "uint8": np.array([0, 255], np.uint8),
    "bool": np.array([True, False]),
    "unicode": np.array(["ab", "c"]),
    "texts": _objects("héllo", ""),
    "token ids of equal length": _objects([1, 2], [3, 4]),
    "bytes tensor 2-d": np.array([["a", "b"], ["c", "d"]], dtype=object),
}


def _plain(value) -> bool:
    """Only what any MessagePack reader understands: no extension types, no pickles."""
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return value is None or isinstance(value, str | bytes | int | float | bool)


@pytest.mark.parametrize("name", list(ARRAYS))
def test_a_tensor_comes_back_equal_and_writable(name):
    array = ARRAYS[name]
    m.check_payload({"x": array})
    raw = m.encode(m.Infer(7, m.encode_payload({"x": array})))
    assert _plain(msgspec.msgpack.decode(raw))
    msg = m.decode_to_worker(raw)
    assert isinstance(msg, m.Infer) and msg.id == 7
    back = m.decode_payload(msg.inputs)["x"]
    assert back.dtype == array.dtype and back.shape == array.shape
    assert back.tolist() == array.tolist()
    if back.dtype != object:
        back[...] = back  # a runtime may write into its inputs


@pytest.mark.parametrize(
    ("item", "why"),
    [
        (b"raw", "got `bytes`"),
        (None, "got `null`"),
        ([1, True], "got `bool`"),
        ([1.5], "got `float`"),
        ([2**70], "<= 9223372036854775807"),
    ],
)
def test_an_object_element_a_replica_cannot_take_is_the_requests_400(item, why):
    with pytest.raises(InvalidInput, match=f"input 'text'.*{why}"):
        m.check_payload({"text": _objects("fine", item)})


def test_a_record_dtype_is_refused():
    with pytest.raises(InvalidInput, match="cannot be sent to a replica"):
        m.check_payload({"x": np.zeros(2, dtype=[("a", "i4"), ("b", "f4")])})


@pytest.mark.parametrize("cls", sorted(set(m.ERROR_CLASSES.values()), key=lambda c: c.__name__))
def test_every_error_in_the_table_survives_the_envelope(cls):
    error = cls("it went wrong", param="prompt")
    raw = m.encode(m.Failed(3, m.ErrorEnvelope.of(error)))
    msg = m.decode_to_server(raw)
    assert isinstance(msg, m.Failed) and msg.error.status == error.status
    back = msg.error.exception()
    assert type(back) is cls
    assert (back.message, back.param, back.status) == ("it went wrong", "prompt", error.status)


def test_a_429_keeps_its_retry_after():
    back = m.ErrorEnvelope.of(QueueFull("full", retry_after=3)).exception()
    assert isinstance(back, QueueFull) and back.headers["Retry-After"] == "3"


def test_an_error_code_outside_the_table_reads_as_a_model_failure():
    back = m.ErrorEnvelope.of(AdminRequired("not for replicas")).exception()
    assert type(back) is ModelFailed and back.message == "not for replicas"


def test_a_generation_request_keeps_what_is_set_and_refuses_what_it_cannot_carry():
    request = m.GenerationRequest.of({"prompt": "Hi", "max_tokens": 4, "seed": -1, "stop": ["."]})
    raw = m.encode(m.Add(5, request))
    msg = m.decode_to_worker(raw)
    assert isinstance(msg, m.Add)
    assert msg.request.as_dict() == {
        "prompt": "Hi",
        "max_tokens": 4,
        "seed": 2**63 - 1,
        "stop": ["."],
    }
    assert (2**63 - 1) & 0xFFFFFFFF == -1 & 0xFFFFFFFF  # the runtime's 32-bit seed is unchanged
    assert m.GenerationRequest.of({"prompt": "x", "seed": 2**90 + 5}).seed == 5
    with pytest.raises(InvalidInput, match=r"\$\.prompt\[1\]"):
        m.GenerationRequest.of({"prompt": [1, 2**64]})
    with pytest.raises(InvalidInput, match="unknown field `temprature`"):
        m.GenerationRequest.of({"prompt": "x", "temprature": 0.5})


def test_generation_events_carry_usage_gauges_and_errors():
    done = m.GenerationEvent.of(
        {
            "text": "!",
            "finish_reason": "stop",
            "usage": {"prompt_tokens": 3, "completion_tokens": 1},
            "timings": {"queued_at": 1.0, "first_token_at": 1.5, "finished_at": 2.0},
            "stats": {"running": 0.0, "waiting": 0.0},
        }
    )
    msg = m.decode_to_server(m.encode(m.Event(9, done, True)))
    assert isinstance(msg, m.Event) and msg.done and msg.event == done
    assert msg.event.usage == m.Usage(prompt_tokens=3, completion_tokens=1)
    late = m.GenerationEvent.of({"error": DeadlineExceeded("too late"), "stats": {"running": 0.0}})
    assert isinstance(late.error.exception(), DeadlineExceeded) and not late.only_stats
    assert m.GenerationEvent(stats={"running": 1.0}).only_stats


@pytest.fixture
def worker(tmp_path):
    """A worker loop serving the add model in a thread, and the server's end of its pipe."""
    spec = ModelSpec(name="add", runtime="onnx", source=str(make_add_model(tmp_path / "a.onnx")))
    server, child = Pipe(duplex=True)
    thread = threading.Thread(target=run_worker, args=(spec.model_dump_json(), child, True))
    thread.start()
    ready = m.decode_to_server(server.recv_bytes())
    assert isinstance(ready, m.Ready) and [t["name"] for t in ready.info["inputs"]] == ["a", "b"]
    yield server
    server.send_bytes(m.encode(m.Stop()))
    thread.join(timeout=10)
    assert not thread.is_alive()


def _ask(conn, raw: bytes):
    conn.send_bytes(raw)
    return m.decode_to_server(conn.recv_bytes())


def test_the_worker_computes_a_batch(worker):
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    answer = _ask(worker, m.encode(m.Infer(1, m.encode_payload({"a": a, "b": a}))))
    assert isinstance(answer, m.Result) and answer.id == 1 and answer.row_errors is None
    outputs = m.decode_payload(answer.outputs)
    np.testing.assert_array_equal(outputs["sum"], a * 2)


def test_the_worker_answers_a_message_it_cannot_read_and_goes_on(worker):
    answer = _ask(worker, msgspec.msgpack.encode(["infer", 2, "not tensors"]))
    assert isinstance(answer, m.Failed) and answer.id == 2
    assert answer.error.code == "model_error" and "could not read" in answer.error.message
    a = np.ones((1, 4), np.float32)
    refused = _ask(worker, m.encode(m.Infer(3, m.encode_payload({"a": a}))))
    assert isinstance(refused, m.Failed) and refused.id == 3
    assert isinstance(refused.error.exception(), InvalidInput)
    assert "missing inputs ['b']" in refused.error.message
    served = _ask(worker, m.encode(m.Infer(4, m.encode_payload({"a": a, "b": a}))))
    assert isinstance(served, m.Result) and served.id == 4
