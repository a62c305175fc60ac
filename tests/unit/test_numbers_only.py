"""A body's bytes may vouch that its values are numbers (app/serving/codecs.py), so the
predictor skips checking each value's type: every way to smuggle a non-number past that
must still be refused, row by row, with the message it always had."""

import json

import pytest
import torch

from app.core.errors import Unprocessable
from app.serving.codecs import PredictJson
from app.serving.predictor import rows_to_tensor

CODEC = PredictJson()
JSON = {"content-type": "application/json"}


def parse(raw: bytes) -> tuple[list[object], bool]:
    parsed = CODEC.parse(raw, JSON, max_rows=1000)
    return parsed.rows, parsed.numbers_only


@pytest.mark.parametrize(
    "raw",
    [
        b'{"inputs": [[1, 2.5, -3e2]]}',
        b'{\n\t"inputs" : [ [0, 1E-3],\r\n[2, 3] ] }',
    ],
)
def test_a_body_of_numbers_is_vouched_for_and_decodes(raw: bytes) -> None:
    rows, numbers_only = parse(raw)
    assert numbers_only
    x = rows_to_tensor(rows, len(rows[0]), numbers_only=True)  # type: ignore[arg-type]
    assert torch.equal(x, torch.tensor(json.loads(raw)["inputs"], dtype=torch.float32))


@pytest.mark.parametrize(
    "raw",
    [
        b'{"inputs": [[1, true]]}',
        b'{"inputs": [[1, "2"]]}',
        b'{"inputs": [[1, null]]}',
        b'{"inputs": [{"a": 1}]}',
        b'{"inputs": [[1, 2]], "inputs": [["x", "y"]]}',  # a key twice: the last one counts
        b'{"inputs": [[1, "inputs"]]}',
    ],
)
def test_a_body_with_any_other_value_is_not_vouched_for(raw: bytes) -> None:
    rows, numbers_only = parse(raw)
    assert not numbers_only
    with pytest.raises(Unprocessable):
        rows_to_tensor(rows, 2)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"inputs": [[1, 2, 3]]}', "expected 2 features, got 3"),
        (b'{"inputs": [[1, [2]]]}', "feature 1 must be a number, got list"),
        (b'{"inputs": [[[1, 2]]]}', "expected 2 features, got 1"),
        (b'{"inputs": [1, 2]}', "expected a list of 2 numbers, got int"),
        (b'{"inputs": [{}, {}]}', "expected a list of 2 numbers, got dict"),
        (b'{"inputs": [[1, 1e39]]}', "finite float32"),
        (b'{"inputs": [[1, 1' + b"0" * 400 + b"]]}", "finite float32"),
    ],
)
def test_vouched_bodies_of_the_wrong_shape_get_the_usual_messages(raw: bytes, message: str) -> None:
    rows, numbers_only = parse(raw)
    assert numbers_only
    with pytest.raises(Unprocessable, match=message.replace("[", r"\[")):
        rows_to_tensor(rows, 2, numbers_only=True)  # type: ignore[arg-type]
