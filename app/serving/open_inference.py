"""Translation between Open Inference Protocol tensors and trainserve's predict rows."""

import math
from typing import Any

import numpy as np
from pydantic import ValidationError

from app.core.errors import PayloadTooLarge, Unprocessable
from app.models import ModelVersion
from app.schemas.open_inference import (
    InferRequest,
    InferTensor,
    ModelMetadata,
    OutputTensor,
    TensorMetadata,
)
from app.serving.predictor import Prediction, check_json_containers

Rows = list[Any]  # numbers: one list of values per row; BYTES: one string per row
INT64_MAX = 2**63 - 1  # the protocol's shapes are int64


def read_request(
    body: bytes, header_length: str | None, max_rows: int
) -> tuple[InferRequest, Rows]:
    """The body (JSON, or JSON followed by binary tensor data) → the request and its one
    input's rows. The shape is checked against the limits before anything is built from it:
    a 90-byte body can claim 10^12 rows."""
    split = _header_length(header_length, len(body))
    check_json_containers(body[:split], max_rows)
    request = _parse_json(body[:split])
    if len(request.inputs) != 1:
        raise Unprocessable(f"these models take one input tensor, got {len(request.inputs)}")
    tensor = request.inputs[0]
    rows, width = _check_shape(tensor, max_rows)
    size = _binary_size(tensor, len(body) - split)
    if size is None:
        return request, _json_rows(tensor, rows, width)
    return request, _binary_rows(tensor, memoryview(body)[split : split + size], rows, width)


def _parse_json(header: bytes) -> InferRequest:
    try:
        return InferRequest.model_validate_json(header)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise Unprocessable(f"{where}: {first['msg']}") from exc


def _check_shape(tensor: InferTensor, max_rows: int) -> tuple[int, int]:
    """(rows, values per row), from the shape alone."""
    if not tensor.shape or not all(0 <= d <= INT64_MAX for d in tensor.shape):
        raise Unprocessable(
            f"input '{tensor.name}': shape must be [rows, ...] of sizes from 0 to 2^63 - 1"
        )
    rows, width = tensor.shape[0], math.prod(tensor.shape[1:])
    if rows > max_rows:
        raise PayloadTooLarge(
            f"input '{tensor.name}': shape {tensor.shape} has {rows} rows; at most {max_rows} "
            "rows per request (TRAINSERVE_MAX_PREDICT_ROWS)",
            code="too_many_rows",
        )
    if rows == 0:
        raise Unprocessable(f"input '{tensor.name}': shape {tensor.shape} has no rows")
    if tensor.datatype == "BYTES" and width != 1:
        raise Unprocessable(f"input '{tensor.name}': BYTES inputs are one string per row")
    if tensor.datatype != "BYTES" and tensor.datatype not in DTYPES:
        raise Unprocessable(f"input '{tensor.name}': datatype {tensor.datatype} is not supported")
    return rows, width


def _json_rows(tensor: InferTensor, rows: int, width: int) -> Rows:
    data = _flatten(tensor.data)  # as long as the body allows, no longer
    _check_count(tensor, rows * width, len(data), "data has")
    if tensor.datatype == "BYTES":
        return [str(item) for item in data]
    if rows == 1:  # the usual request: no copy
        return [data]
    return [data[i * width : (i + 1) * width] for i in range(rows)]


def _check_count(tensor: InferTensor, expected: int, found: int, what: str) -> None:
    if expected != found:
        raise Unprocessable(
            f"input '{tensor.name}': shape {tensor.shape} holds {expected} values, {what} {found}"
        )


def _flatten(data: list[Any]) -> list[Any]:
    if list not in set(map(type, data)):  # already flat, the usual case: checked in C
        return data
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:  # iterative: a deeply nested body cannot exhaust the recursion limit
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def outputs(result: Prediction, wanted: set[str] | None) -> list[OutputTensor]:
    n = len(result.predictions)
    tensors = []
    if result.probabilities is None:  # a regression: values, not labels
        tensors.append(
            OutputTensor(name="predictions", shape=[n], datatype="FP32", data=result.predictions)
        )
    else:
        labels = [str(p) for p in result.predictions]
        tensors.append(OutputTensor(name="predictions", shape=[n], datatype="BYTES", data=labels))
    if result.probabilities is not None:
        k = len(result.probabilities[0]) if n else 0
        flat = [p for row in result.probabilities for p in row]
        tensors.append(OutputTensor(name="probabilities", shape=[n, k], datatype="FP32", data=flat))
    return [t for t in tensors if wanted is None or t.name in wanted]


def metadata(name: str, versions: list[ModelVersion], version: ModelVersion) -> ModelMetadata:
    kind = version.dataset.get("kind", "tabular")
    if kind == "text":
        inputs = [TensorMetadata(name="input", datatype="BYTES", shape=[-1])]
    else:
        inputs = [TensorMetadata(name="input", datatype="FP32", shape=[-1, *version.input_shape])]
    outs = [
        TensorMetadata(
            name="predictions",
            datatype="FP32" if version.task == "regression" else "BYTES",
            shape=[-1],
        )
    ]
    if version.classes is not None:
        outs.append(
            TensorMetadata(name="probabilities", datatype="FP32", shape=[-1, len(version.classes)])
        )
    return ModelMetadata(
        name=name,
        versions=[str(v.version) for v in versions],
        platform="pytorch",
        inputs=inputs,
        outputs=outs,
    )


# The protocol's binary tensor extension: a JSON header of Inference-Header-Content-Length
# bytes, then each input's raw little-endian data (tritonclient sends this by default).
DTYPES = {
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
}


def _binary_size(tensor: InferTensor, left: int) -> int | None:
    """parameters.binary_data_size: the tensor's byte count in the binary part, if it has one."""
    size = (tensor.parameters or {}).get("binary_data_size")
    if size is None:
        return None
    if type(size) is not int or not 0 <= size <= left:  # bool is an int: refused too
        raise Unprocessable(
            f"input '{tensor.name}': parameters.binary_data_size must be a whole number of "
            f"bytes, within the {left} bytes after the JSON header"
        )
    return size


def _header_length(value: str | None, total: int) -> int:
    if value is None:
        return total
    # isdigit alone also takes digits int() cannot read, such as '\xb2' (a superscript 2)
    if not (value.isascii() and value.isdigit() and len(value) <= 19) or int(value) > total:
        raise Unprocessable("Inference-Header-Content-Length must be a byte count within the body")
    return int(value)


def _binary_rows(tensor: InferTensor, raw: memoryview, rows: int, width: int) -> Rows:
    if tensor.datatype == "BYTES":
        return _binary_strings(tensor, raw, rows)
    dtype = np.dtype(DTYPES[tensor.datatype])
    if len(raw) % dtype.itemsize:
        raise Unprocessable(
            f"input '{tensor.name}': binary data is not a whole number of {tensor.datatype}"
        )
    _check_count(tensor, rows * width, len(raw) // dtype.itemsize, "binary data has")
    values: Rows = np.frombuffer(raw, dtype=dtype).reshape(rows, width).astype(np.float64).tolist()
    return values


def _binary_strings(tensor: InferTensor, raw: memoryview, rows: int) -> Rows:
    """Each string: a 4-byte little-endian length, then its bytes."""
    items: Rows = []
    at = 0
    while at < len(raw) and len(items) < rows:
        n = int.from_bytes(raw[at : at + 4], "little")
        if at + 4 + n > len(raw):
            break
        items.append(bytes(raw[at + 4 : at + 4 + n]).decode("utf-8", errors="replace"))
        at += 4 + n
    if at != len(raw) or len(items) != rows:
        raise Unprocessable(
            f"input '{tensor.name}': shape {tensor.shape} holds {rows} strings; the binary data "
            "is not that many length-prefixed strings"
        )
    return items
