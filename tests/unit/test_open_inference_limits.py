"""An Open Inference Protocol body is checked from its shape, against the limits, before any
row is built: a body of a few bytes may claim 10^12 rows, or binary data it does not have."""

import json
import time
import tracemalloc
from typing import Any

import numpy as np
import pytest

from app.core.errors import AppError
from app.serving.open_inference import DTYPES, read_request
from app.serving.predictor import check_json_containers

MAX_ROWS = 4096


def body(shape: list[Any], data: list[Any] | None = None, **tensor: Any) -> bytes:
    tensor = {"name": "input", "shape": shape, "datatype": "FP32", **tensor}
    if data is not None:
        tensor["data"] = data
    return json.dumps({"inputs": [tensor]}).encode()


def binary(
    shape: list[int], raw: bytes, datatype: str = "FP32", size: Any = None
) -> tuple[bytes, str]:
    """The body and its Inference-Header-Content-Length."""
    parameters = {"binary_data_size": len(raw) if size is None else size}
    header = body(shape, datatype=datatype, parameters=parameters)
    return header + raw, str(len(header))


def refused(data: bytes, status: int, match: str, header: str | None = None) -> AppError:
    with pytest.raises(AppError, match=match) as caught:
        read_request(data, header, MAX_ROWS)
    assert caught.value.status_code == status, caught.value.message
    return caught.value


@pytest.mark.parametrize(
    "shape", [[20_000_000, 0], [10**12, 0], [2**63 - 1, 0], [4097, 2], [10**15, 0, 0, 0]]
)
def test_rows_past_the_limit_are_413_from_the_shape_before_anything_is_built(
    shape: list[int],
) -> None:
    tracemalloc.start()
    started = time.perf_counter()
    error = refused(body(shape, []), 413, "TRAINSERVE_MAX_PREDICT_ROWS")
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert error.code == "too_many_rows"
    assert elapsed < 0.05 and peak < 1_000_000


def test_binary_rows_past_the_limit_are_413_before_the_data_is_read() -> None:
    data, header = binary([10**9, 64], b"\0" * 256)
    assert refused(data, 413, "at most 4096 rows", header).code == "too_many_rows"


@pytest.mark.parametrize(
    ("shape", "data", "match"),
    [
        ([4096, 10**12], [], r"holds 4096000000000000 values, data has 0"),
        ([2, 2], [1.0, 2.0, 3.0], "holds 4 values, data has 3"),
        ([0, 64], [], "has no rows"),
        ([], [1.0], r"shape must be \[rows, ...\]"),
        ([-2, -2], [1.0] * 4, "sizes from 0 to 2\\^63 - 1"),
        ([1, 2**63], [], "sizes from 0 to 2\\^63 - 1"),
    ],
)
def test_a_shape_that_does_not_hold_its_data_is_422(
    shape: list[int], data: list[Any], match: str
) -> None:
    refused(body(shape, data), 422, match)


@pytest.mark.parametrize("size", ["abc", [1], True, -1, 1.5, {"n": 8}, 9, 10**30])
def test_a_binary_data_size_that_is_not_a_byte_count_in_the_body_is_422(size: Any) -> None:
    data, header = binary([1, 2], np.zeros(2, np.float32).tobytes(), size=size)
    refused(data, 422, "binary_data_size must be a whole number of bytes", header)


@pytest.mark.parametrize("value", ["\xb2", "1" * 30, "-1", "12 ", "abc", "99999"])
def test_an_inference_header_length_that_is_not_a_byte_count_in_the_body_is_422(
    value: str,
) -> None:
    data, _ = binary([1, 2], np.zeros(2, np.float32).tobytes())
    refused(data, 422, "Inference-Header-Content-Length must be a byte count", value)


@pytest.mark.parametrize(
    ("shape", "raw", "datatype", "match"),
    [
        ([2, 2], np.zeros(3, np.float32).tobytes(), "FP32", "holds 4 values, binary data has 3"),
        ([1, 2], b"\0" * 7, "FP32", "not a whole number of FP32"),
        ([2], (3).to_bytes(4, "little") + b"abc", "BYTES", "holds 2 strings"),
        ([1], (9).to_bytes(4, "little") + b"abc", "BYTES", "holds 1 strings"),
        ([1], (3).to_bytes(4, "little") + b"abcd", "BYTES", "holds 1 strings"),
        ([1, 2], b"\0" * 8, "BF16", "datatype BF16 is not supported"),
    ],
)
def test_binary_data_that_does_not_fill_its_shape_exactly_is_422(
    shape: list[int], raw: bytes, datatype: str, match: str
) -> None:
    data, header = binary(shape, raw, datatype)
    refused(data, 422, match, header)


@pytest.mark.parametrize("datatype", ["FP16", "FP32", "FP64", "INT8", "INT64", "UINT16"])
def test_binary_and_json_tensors_give_the_same_rows(datatype: str) -> None:
    values = np.arange(6).reshape(3, 2)
    data, header = binary([3, 2], values.astype(DTYPES[datatype]).tobytes(), datatype)
    _, from_binary = read_request(data, header, MAX_ROWS)
    _, from_json = read_request(body([3, 2], values.ravel().tolist()), None, MAX_ROWS)
    assert from_binary == from_json == values.tolist()


def test_nested_json_data_and_byte_strings_give_one_item_per_row() -> None:
    _, rows = read_request(body([2, 3], [[1, 2, 3], [4, 5, 6]]), None, MAX_ROWS)
    assert rows == [[1, 2, 3], [4, 5, 6]]
    texts = b"".join(len(t).to_bytes(4, "little") + t for t in (b"hi", b"", "\u00e9".encode()))
    data, header = binary([3, 1], texts, "BYTES")
    assert read_request(data, header, MAX_ROWS)[1] == ["hi", "", "\u00e9"]


def test_a_body_of_more_json_lists_than_its_rows_need_is_413_before_it_is_parsed() -> None:
    """Millions of tiny lists hold the GIL while they are parsed, on whichever thread."""
    bomb = body([4096, 2], [[0]] * 1_000_000)
    started = time.perf_counter()
    error = refused(bomb, 413, "1000005 JSON arrays and objects, more than 4096 rows need")
    assert error.code == "too_many_json_containers" and time.perf_counter() - started < 0.2
    with pytest.raises(AppError, match="at most 2112"):
        check_json_containers(json.dumps({"inputs": [{}] * 3000}).encode(), max_rows=64)


def test_brackets_inside_strings_are_text_not_json_lists() -> None:
    texts = ['say "[[{{" \\', "[" * 500, '\\"[{"'] * 40  # escaped quotes and backslashes too
    check_json_containers(json.dumps({"inputs": texts}).encode(), max_rows=4)
    _, rows = read_request(body([120], texts, datatype="BYTES"), None, 120)
    assert rows == texts
