"""The Open Inference Protocol's tensor datatypes and their numpy and onnxruntime names.

One table for every layer: the v2 codec decodes request data with it, runtimes declare their
tensors with it, and the worker messages carry numpy dtypes that these names map onto.
``BYTES`` is text (or raw bytes): a numpy object array, one element per item.
"""

from __future__ import annotations

import numpy as np

V2_TO_NUMPY: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
"""Each v2 datatype and the numpy dtype its data decodes to."""

_NUMERIC_TO_V2 = {dtype.str: name for name, dtype in V2_TO_NUMPY.items() if name != "BYTES"}

ORT_TO_V2: dict[str, str] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}
"""onnxruntime's type strings (``NodeArg.type``) as v2 datatypes."""


def v2_datatype(dtype: np.dtype) -> str | None:
    """The v2 datatype of a numpy dtype: text and objects are ``BYTES``; None when the
    protocol has no datatype for it (complex numbers, dates, records)."""
    if dtype.kind in "OUS":
        return "BYTES"
    return _NUMERIC_TO_V2.get(dtype.str)
