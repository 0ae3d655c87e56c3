"""Tensors between the Open Inference Protocol and numpy: JSON data and Triton's binary extension.

Every input is checked against the model's declared inputs (name, datatype, rank, fixed
dimensions, element count) so that a wrong request is a 400 naming the problem and never
reaches a replica.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import orjson

from aimass.dtypes import V2_TO_NUMPY, v2_datatype
from aimass.errors import InvalidInput
from aimass.protocols.v2 import InferenceRequest, RequestInput

HEADER = "inference-header-content-length"


def parse_body(body: bytes, header_length: str | None) -> tuple[InferenceRequest, bytes]:
    """Split a request into its JSON header and the binary tail (Triton binary extension)."""
    if header_length is not None:
        try:
            size = int(header_length)
        except ValueError:
            raise InvalidInput("Inference-Header-Content-Length must be an integer") from None
        if not 0 <= size <= len(body):
            raise InvalidInput(f"Inference-Header-Content-Length {size} exceeds the body size")
        head, tail = body[:size], body[size:]
    else:
        head, tail = body, b""
    try:
        raw = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}") from None
    return InferenceRequest.model_validate(raw), tail


def decode_inputs(
    request: InferenceRequest, tail: bytes, declared: list[dict], *, raw_bytes: bool = False
) -> dict[str, np.ndarray]:
    """The request's tensors as numpy arrays, checked against the model's ``declared`` inputs.

    Binary ``BYTES`` elements are decoded as UTF-8 text, except with ``raw_bytes`` (models
    whose ``BYTES`` inputs are encoded files, such as images), which keep them as ``bytes``.
    """
    by_name = {d["name"]: d for d in declared}
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for inp in request.inputs:
        if inp.name in arrays:
            raise InvalidInput(f"input {inp.name!r} is given twice")
        spec = by_name.get(inp.name)
        if by_name and spec is None:
            raise InvalidInput(f"unknown input {inp.name!r}; the model takes {sorted(by_name)}")
        _check_header(inp, spec)
        size = (inp.parameters or {}).get("binary_data_size")
        if size is not None:
            arrays[inp.name], offset = _from_binary(inp, tail, offset, size, raw_bytes)
        else:
            arrays[inp.name] = _from_json(inp)
    missing = set(by_name) - arrays.keys()
    if missing:
        raise InvalidInput(f"missing inputs {sorted(missing)}; the model takes {sorted(by_name)}")
    return arrays


def _check_header(inp: RequestInput, spec: dict | None) -> None:
    if inp.datatype not in V2_TO_NUMPY:
        raise InvalidInput(f"input {inp.name!r}: unknown datatype {inp.datatype!r}")
    if any(d < 0 for d in inp.shape):
        raise InvalidInput(f"input {inp.name!r}: shape {inp.shape} has a negative dimension")
    if len(inp.shape) == 0:
        raise InvalidInput(f"input {inp.name!r}: shape must have a batch dimension")
    if spec is None:
        return
    if inp.datatype != spec["datatype"]:
        raise InvalidInput(
            f"input {inp.name!r}: datatype {inp.datatype} does not match "
            f"the model's {spec['datatype']}"
        )
    want = spec["shape"]
    if want and (
        len(want) != len(inp.shape)
        or any(w >= 0 and w != g for w, g in zip(want, inp.shape, strict=True))
    ):
        raise InvalidInput(
            f"input {inp.name!r}: shape {inp.shape} does not match the model's {want}"
        )


def _from_json(inp: RequestInput) -> np.ndarray:
    count = math.prod(inp.shape)
    fast = _numeric_fast_path(inp, count)
    if fast is not None:
        return fast
    flat = _flatten(inp.data)
    if len(flat) != count:
        raise InvalidInput(
            f"input {inp.name!r}: {len(flat)} elements given, shape {inp.shape} needs {count}"
        )
    if inp.datatype == "BYTES":
        if not all(isinstance(x, str) for x in flat):
            raise InvalidInput(f"input {inp.name!r}: BYTES data must be strings")
        arr = np.empty(count, dtype=object)
        arr[:] = flat
        return arr.reshape(inp.shape)
    if any(isinstance(x, (str, dict, type(None))) for x in flat):
        raise InvalidInput(f"input {inp.name!r}: {inp.datatype} data must be numbers")
    try:
        with np.errstate(all="ignore"):
            arr = np.asarray(flat, dtype=V2_TO_NUMPY[inp.datatype])
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput(f"input {inp.name!r}: data is not valid {inp.datatype}: {exc}") from None
    return arr.reshape(inp.shape)


def _numeric_fast_path(inp: RequestInput, count: int) -> np.ndarray | None:
    """Let numpy convert well-formed numeric data in C; anything unusual takes the checked path.

    Only plain numbers (bool, int, float) are taken here, so strings are never coerced and
    out-of-range integers still get the checked path's error.
    """
    if inp.datatype == "BYTES" or not isinstance(inp.data, list):
        return None
    try:
        arr = np.asarray(inp.data)
    except ValueError:  # ragged nesting
        return None
    if arr.dtype.kind not in "bif" or arr.size != count:
        return None
    target = V2_TO_NUMPY[inp.datatype]
    if target.kind in "iu" and arr.dtype.kind == "i" and arr.size:
        info = np.iinfo(target)
        if arr.min() < info.min or arr.max() > info.max:
            return None
    with np.errstate(all="ignore"):
        return arr.astype(target, copy=False).reshape(inp.shape)


def _flatten(data: Any) -> list:
    if data is None:
        return []
    if not isinstance(data, list):
        return [data]
    out: list = []
    stack = [iter(data)]
    while stack:
        for x in stack[-1]:
            if isinstance(x, list):
                stack.append(iter(x))
                break
            out.append(x)
        else:
            stack.pop()
    return out


def _from_binary(
    inp: RequestInput, tail: bytes, offset: int, size: Any, raw_bytes: bool
) -> tuple[np.ndarray, int]:
    if not isinstance(size, int) or size < 0 or offset + size > len(tail):
        raise InvalidInput(f"input {inp.name!r}: binary_data_size {size} is beyond the body")
    chunk = tail[offset : offset + size]
    count = math.prod(inp.shape)
    if inp.datatype == "BYTES":
        items = _unpack_bytes(chunk, inp.name, raw_bytes)
        if len(items) != count:
            raise InvalidInput(
                f"input {inp.name!r}: {len(items)} elements given, shape needs {count}"
            )
        arr = np.empty(count, dtype=object)
        arr[:] = items
    else:
        dtype = V2_TO_NUMPY[inp.datatype]
        if size != count * dtype.itemsize:
            raise InvalidInput(
                f"input {inp.name!r}: {size} bytes given, shape {inp.shape} of {inp.datatype} "
                f"needs {count * dtype.itemsize}"
            )
        arr = np.frombuffer(chunk, dtype=dtype)
    return arr.reshape(inp.shape), offset + size


def _unpack_bytes(chunk: bytes, name: str, raw: bool) -> list[str] | list[bytes]:
    items, pos = [], 0
    while pos < len(chunk):
        if pos + 4 > len(chunk):
            raise InvalidInput(f"input {name!r}: truncated BYTES element")
        (n,) = struct.unpack_from("<I", chunk, pos)
        pos += 4
        if pos + n > len(chunk):
            raise InvalidInput(f"input {name!r}: truncated BYTES element")
        element = chunk[pos : pos + n]
        items.append(element if raw else element.decode("utf-8", errors="replace"))
        pos += n
    return items


def datatype_of(arr: np.ndarray) -> str:
    return v2_datatype(arr.dtype) or "FP32"


def encode_outputs(
    outputs: dict[str, np.ndarray], request: InferenceRequest
) -> tuple[list[dict], bytes]:
    """JSON outputs, plus a binary tail for outputs the client asked to get as binary."""
    params = request.parameters or {}
    binary_all = bool(params.get("binary_data_output", False))
    wanted = {o.name: (o.parameters or {}) for o in request.outputs or []}
    unknown = set(wanted) - outputs.keys()
    if unknown:
        raise InvalidInput(f"unknown outputs {sorted(unknown)}; the model gives {sorted(outputs)}")
    names = list(wanted) if wanted else list(outputs)
    result, tail = [], bytearray()
    for name in names:
        arr = outputs[name]
        entry: dict[str, Any] = {
            "name": name,
            "datatype": datatype_of(arr),
            "shape": list(arr.shape),
        }
        if wanted.get(name, {}).get("binary_data", binary_all):
            raw = _to_bytes(arr)
            entry["parameters"] = {"binary_data_size": len(raw)}
            tail += raw
        else:
            entry["data"] = _to_list(arr)
        result.append(entry)
    return result, bytes(tail)


def _to_list(arr: np.ndarray) -> list | np.ndarray:
    """Output data for ``orjson`` (``OPT_SERIALIZE_NUMPY``): numeric arrays go as they are and
    non-finite floats become null; text becomes a list of str."""
    flat = arr.reshape(-1)
    if flat.dtype == object or flat.dtype.kind in "US":
        return [x.decode() if isinstance(x, bytes) else str(x) for x in flat]
    return np.ascontiguousarray(flat)


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


def _to_bytes(arr: np.ndarray) -> bytes:
    if arr.dtype == object or arr.dtype.kind in "US":
        parts = []
        for x in arr.reshape(-1):
            raw = x if isinstance(x, bytes) else str(x).encode()
            parts.append(struct.pack("<I", len(raw)) + raw)
        return b"".join(parts)
    return np.ascontiguousarray(arr).tobytes()
