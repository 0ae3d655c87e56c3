from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from aimass.errors import InvalidInput
from aimass.protocols.v2 import InferenceRequest
from aimass.protocols.v2 import codec as v2_codec

DECLARED = [
    {"name": "x", "datatype": "FP32", "shape": [-1, 2]},
    {"name": "t", "datatype": "BYTES", "shape": [-1]},
]


def decode(body: dict, tail: bytes = b""):
    return v2_codec.decode_inputs(InferenceRequest.model_validate(body), tail, DECLARED)


def test_nested_and_flat_json_data_decode_alike():
    flat = decode(
        {
            "inputs": [
                {"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]},
                {"name": "t", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]},
            ]
        }
    )
    nested = decode(
        {
            "inputs": [
                {"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3, 4]]},
                {"name": "t", "shape": [2], "datatype": "BYTES", "data": [["a"], ["b"]]},
            ]
        }
    )
    for got in (flat, nested):
        assert got["x"].dtype == np.float32 and got["x"].tolist() == [[1, 2], [3, 4]]
        assert got["t"].tolist() == ["a", "b"]


def test_binary_extension_round_trip():
    x = np.array([[1.5, 2.5]], np.float32)
    words = b"".join(struct.pack("<I", len(w)) + w for w in (b"hi",))
    tail = x.tobytes() + words
    got = decode(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [1, 2],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 8},
                },
                {
                    "name": "t",
                    "shape": [1],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(words)},
                },
            ]
        },
        tail,
    )
    assert got["x"].tolist() == x.tolist() and got["t"].tolist() == ["hi"]
    req = InferenceRequest.model_validate(
        {
            "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [0]}],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}, {"name": "s"}],
        }
    )
    entries, raw = v2_codec.encode_outputs(
        {"y": np.array([3.0, 4.0], np.float32), "s": np.array(["é"], dtype=object)}, req
    )
    assert entries[0]["parameters"] == {"binary_data_size": 8}
    assert np.frombuffer(raw, np.float32).tolist() == [3.0, 4.0]
    assert entries[1]["data"] == ["é"] and entries[1]["datatype"] == "BYTES"


def test_header_split_and_errors():
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [1, 2],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 8},
                }
            ]
        }
    ).encode()
    req, tail = v2_codec.parse_body(head + b"\0" * 8, str(len(head)))
    assert len(tail) == 8 and req.inputs[0].name == "x"
    with pytest.raises(InvalidInput, match="exceeds the body"):
        v2_codec.parse_body(head, str(len(head) + 1))
    with pytest.raises(InvalidInput, match="needs 8"):
        decode(
            {
                "inputs": [
                    {
                        "name": "x",
                        "shape": [1, 2],
                        "datatype": "FP32",
                        "parameters": {"binary_data_size": 4},
                    },
                    {"name": "t", "shape": [1], "datatype": "BYTES", "data": ["a"]},
                ]
            },
            b"\0" * 4,
        )
    with pytest.raises(InvalidInput, match="missing inputs"):
        decode({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]})


def test_non_finite_outputs_become_null():
    req = InferenceRequest.model_validate(
        {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [0]}]}
    )
    entries, _ = v2_codec.encode_outputs({"y": np.array([np.nan, 1.0], np.float32)}, req)
    assert json.loads(v2_codec.dumps(entries))[0]["data"] == [None, 1.0]


@pytest.mark.parametrize(
    ("datatype", "data", "words"),
    [
        ("FP32", ["1.5", 2], "must be numbers"),
        ("UINT8", [300, 1], "not valid UINT8"),
        ("INT64", [[1], [2, 3]], "elements given"),
        ("FP32", [1, 2, 3], "3 elements given"),
    ],
)
def test_fast_path_keeps_the_checked_errors(datatype, data, words):
    body = {"inputs": [{"name": "v", "shape": [2], "datatype": datatype, "data": data}]}
    with pytest.raises(InvalidInput, match=words):
        v2_codec.decode_inputs(InferenceRequest.model_validate(body), b"", [])


def test_fast_path_converts_nested_numbers():
    body = {
        "inputs": [{"name": "v", "shape": [2, 2], "datatype": "INT32", "data": [[1, 2], [3, True]]}]
    }
    got = v2_codec.decode_inputs(InferenceRequest.model_validate(body), b"", [])["v"]
    assert got.dtype == np.int32 and got.tolist() == [[1, 2], [3, 1]]
