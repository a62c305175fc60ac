"""Translation between Open Inference Protocol tensors and trainserve's predict rows."""

import math
from typing import Any

import numpy as np
from pydantic import ValidationError

from app.core.errors import Unprocessable
from app.models import ModelVersion
from app.schemas.v2 import InferRequest, InferTensor, ModelMetadata, OutputTensor, TensorMetadata
from app.serving.predictor import Prediction

NUMERIC = {
    "FP16",
    "FP32",
    "FP64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
}


def tensor_rows(tensor: InferTensor) -> list[Any]:
    """A V2 input tensor (shape [N, ...], row-major data) → N predict rows."""
    data = _flatten(tensor.data)
    if not tensor.shape or any(d < 0 for d in tensor.shape):
        raise Unprocessable(
            f"input '{tensor.name}': shape must be [rows, ...] with no negative sizes"
        )
    if math.prod(tensor.shape) != len(data):
        raise Unprocessable(
            f"input '{tensor.name}': shape {tensor.shape} holds {math.prod(tensor.shape)} "
            f"values, data has {len(data)}"
        )
    if tensor.datatype == "BYTES":
        if len(tensor.shape) != 1 and math.prod(tensor.shape[1:]) != 1:
            raise Unprocessable(f"input '{tensor.name}': BYTES inputs are one string per row")
        return [str(item) for item in data]
    if tensor.datatype not in NUMERIC:
        raise Unprocessable(f"input '{tensor.name}': datatype {tensor.datatype} is not supported")
    width = math.prod(tensor.shape[1:])
    return [data[i * width : (i + 1) * width] for i in range(tensor.shape[0])]


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


def parse_request(body: bytes, header_length: str | None) -> InferRequest:
    """JSON, or JSON followed by binary tensor data."""
    split = _header_length(header_length, len(body))
    try:
        request = InferRequest.model_validate_json(body[:split])
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise Unprocessable(f"{where}: {first['msg']}") from exc
    binary = memoryview(body)[split:]
    for tensor in request.inputs:
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is not None:
            tensor.data = _decode_binary(tensor, binary[: int(size)])
            binary = binary[int(size) :]
    return request


def _header_length(value: str | None, total: int) -> int:
    if value is None:
        return total
    if not value.isdigit() or int(value) > total:
        raise Unprocessable("Inference-Header-Content-Length must be a byte count within the body")
    return int(value)


def _decode_binary(tensor: InferTensor, raw: memoryview) -> list[Any]:
    if tensor.datatype == "BYTES":
        items, at = [], 0
        while at + 4 <= len(raw):
            n = int.from_bytes(raw[at : at + 4], "little")
            items.append(bytes(raw[at + 4 : at + 4 + n]).decode("utf-8", errors="replace"))
            at += 4 + n
        return items
    dtype = DTYPES.get(tensor.datatype)
    if dtype is None:
        raise Unprocessable(f"input '{tensor.name}': datatype {tensor.datatype} is not supported")
    if len(raw) % np.dtype(dtype).itemsize:
        raise Unprocessable(
            f"input '{tensor.name}': binary data is not a whole number of {tensor.datatype}"
        )
    values: list[Any] = np.frombuffer(raw, dtype=dtype).astype(np.float64).tolist()
    return values
