"""The predict path: decode rows, apply the stored preprocessing, run the forward pass."""

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from app.core.errors import PayloadTooLarge, Unprocessable, problem
from app.core.kinds import Task
from app.ml.bundle import ModelBundle
from app.ml.images import ImageDecodeError, PixelBudget, TooManyPixels, decode_base64_image

MAX_TEXT_CHARS = 100_000
# Tabular requests of up to this many values decode on the event loop (Serving._decode).
INLINE_VALUES = 16 * 1024
# A row is one list or object in v1, a few nested lists in a V2 tensor (check_json_containers).
JSON_CONTAINERS_PER_ROW = 32


@dataclass(frozen=True)
class Prediction:
    predictions: list[Any]
    probabilities: list[list[float]] | None
    classes: list[Any] | None = None  # the labels of the probabilities' columns, in order


def rows_to_tensor(
    inputs: list[Any],
    width: int,
    index: int = 0,
    numbers_only: bool = False,
    names: list[str] | None = None,
) -> torch.Tensor:
    """Check every row (a list of `width` finite numbers) and stack them: (rows, width).
    `index` numbers the rows in messages when these are part of a larger request.
    numbers_only: the body they came from holds no value but numbers (codecs.py checks its
    bytes), so no value needs its type checked: a bool or a string could not be there.
    names: the features in order, for messages that say which one is wrong."""
    # The common case is checked in C (type sets, one array, one isfinite): a Python loop over
    # every value cost more than the forward pass. Anything it rejects is looked at again,
    # row by row, to say which row is wrong and why.
    if numbers_only or all(
        type(row) is list and len(row) == width and _NUMBERS.issuperset(map(type, row))
        for row in inputs
    ):
        try:
            with np.errstate(over="ignore"):  # beyond float32: inf, refused just below
                x = np.array(inputs, dtype=np.float32)
        except (OverflowError, TypeError, ValueError):  # an int beyond float64; rows that
            x = None  # are not flat lists of numbers (numbers_only checks values, not rows)
        if x is not None and x.shape[1:] == (width,) and bool(np.isfinite(x).all()):
            return torch.from_numpy(x)
    _check_rows(inputs, width, index, names)
    raise _bad_row(index, "features must be finite float32 numbers")


_NUMBERS = frozenset({int, float})
_JSON_STRING = re.compile(rb'"[^"]*"')  # once escaped quotes are dropped
FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_json_containers(raw: bytes, max_rows: int) -> None:
    """413 for a body of more JSON arrays and objects than max_rows rows need, before it is
    parsed: each becomes a Python list or dict (~200 bytes), and parsing millions of them (an
    8 MiB body of "[0]," holds 1.9 M) holds the GIL for seconds, whichever thread parses."""
    limit = JSON_CONTAINERS_PER_ROW * max_rows + 64
    # Each takes 2 bytes at least ("[]"): a body this small cannot hold too many, and the
    # usual request is not even counted. Then two passes in C, then (rarely) strings skipped.
    if len(raw) <= 2 * limit:
        return
    containers = raw.count(b"[") + raw.count(b"{")
    if containers <= limit:
        return
    # Brackets inside strings are text: drop escaped backslashes and quotes, then take away
    # the brackets of each string. Only the strings are copied, never the whole body again:
    # a body refused here costs little more memory than the body.
    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    in_strings = sum(s.count(b"[") + s.count(b"{") for s in _JSON_STRING.findall(unescaped))
    found = containers - in_strings
    if found > limit:
        raise PayloadTooLarge(
            f"the body holds {found} JSON arrays and objects, more than {max_rows} rows need "
            f"(at most {limit}; TRAINSERVE_MAX_PREDICT_ROWS): send each row as one flat list",
            details={"setting": "max_predict_rows", "limit": limit},
            code="too_many_json_containers",
        )


def _check_rows(inputs: list[Any], width: int, index: int, names: list[str] | None) -> None:
    for i, row in enumerate(inputs, start=index):
        if not isinstance(row, list):
            raise _bad_row(i, f"expected a list of {width} numbers, got {type(row).__name__}")
        if len(row) != width:
            raise _bad_row(i, _count_message(width, len(row), names), **_order(names))
        for position, value in enumerate(row):
            if isinstance(value, bool) or not isinstance(value, int | float):
                feature = _feature(position, names)
                message = f"{feature} must be a number, got {type(value).__name__}"
                raise _bad_row(i, message, feature=names[position] if names else position)
            if abs(value) > FLOAT32_MAX or not math.isfinite(value):  # int first: no overflow
                feature = _feature(position, names)
                raise _bad_row(i, f"{feature} must be a finite float32 number")


# A categorical CSV column becomes one feature per category ("city=lima"), so a model's list
# of features can be long: messages show this many, and details carry them all.
SHOWN_FEATURES = 20


def _count_message(width: int, got: int, names: list[str] | None) -> str:
    message = f"expected {width} features, got {got}"
    if not names:
        return message
    shown = ", ".join(names[:SHOWN_FEATURES]) + (", ..." if len(names) > SHOWN_FEATURES else "")
    return f"{message}; in this order: {shown} (or send an object of named features)"


def _order(names: list[str] | None) -> dict[str, Any]:
    return {"features": names} if names else {}


def _feature(position: int, names: list[str] | None) -> str:
    return f"feature {position} ('{names[position]}')" if names else f"feature {position}"


def _bad_row(index: int, message: str, **facts: Any) -> Unprocessable:
    details = [problem(f"inputs.{index}", message, "invalid_input", **facts)]
    return Unprocessable(f"inputs[{index}]: {message}", details=details)


def decode(
    bundle: ModelBundle,
    inputs: list[Any],
    max_pixels: int | None = None,
    numbers_only: bool = False,
) -> torch.Tensor:
    """Request items → checked rows in stored form: raw features, uint8 pixels or token ids.
    Per request; what is per batch (scaling, normalizing) waits for `predict`. max_pixels
    bounds the pixels of the request's PNG/JPEG images, summed (413 past it). numbers_only:
    see rows_to_tensor."""
    pre = bundle.preprocessor
    if bundle.task == Task.generation:
        raise Unprocessable(
            "this model generates text: POST /v1/models/{name}/generate with a prompt",
            code="generation_model",
        )
    if pre.kind == "text":
        return pre.encode_texts(_texts(inputs))
    if pre.kind == "image":
        return _images(inputs, pre.input_shape, PixelBudget(max_pixels) if max_pixels else None)
    if pre.feature_names and any(isinstance(row, dict) for row in inputs):
        inputs = [
            _record(row, i, pre.feature_names) if isinstance(row, dict) else row
            for i, row in enumerate(inputs)
        ]
        numbers_only = False  # values that were named: checked as any other
    return rows_to_tensor(
        inputs, pre.input_shape[0], numbers_only=numbers_only, names=pre.feature_names
    )


def _record(row: dict[str, Any], index: int, names: list[str]) -> list[Any]:
    """{"feature": value} → a row in feature order. A categorical column that training
    one-hot encoded as "column=value" features takes its value: {"city": "lima"}."""
    values: dict[str, Any] = dict.fromkeys(names)
    for key, value in row.items():
        if key in values:
            values[key] = value
            continue
        one_hot = [n for n in names if n.startswith(f"{key}=")]
        if not one_hot:
            raise _bad_row(index, f"unknown feature '{str(key)[:100]}'")
        if f"{key}={value}" not in values:
            raise _bad_row(
                index, f"'{str(value)[:100]}' is not a category of '{key}' seen in training"
            )
        for name in one_hot:
            values[name] = 1.0 if name == f"{key}={value}" else 0.0
    missing = [n for n, v in values.items() if v is None]
    if missing:
        raise _bad_row(index, f"missing features: {', '.join(missing[:10])}")
    return list(values.values())


def _texts(inputs: list[Any]) -> list[str]:
    for i, item in enumerate(inputs):
        if not isinstance(item, str):
            raise _bad_row(i, f"a text model takes strings, got {type(item).__name__}")
        if len(item) > MAX_TEXT_CHARS:
            raise _bad_row(i, f"text longer than {MAX_TEXT_CHARS} characters")
    return inputs


def _images(inputs: list[Any], shape: list[int], budget: PixelBudget | None) -> torch.Tensor:
    """Each item: a base64 PNG/JPEG, or a flattened image of C*H*W values in 0..255."""
    size = shape[0] * shape[1] * shape[2]
    pixels = []
    for i, item in enumerate(inputs):
        if isinstance(item, str):
            try:
                pixels.append(torch.from_numpy(decode_base64_image(item, shape, budget=budget)))
            except TooManyPixels as exc:
                raise PayloadTooLarge(
                    f"inputs[{i}]: {exc} (TRAINSERVE_MAX_PREDICT_PIXELS)",
                    details={"setting": "max_predict_pixels", "limit": exc.limit},
                    code="too_many_pixels",
                ) from exc
            except ImageDecodeError as exc:
                raise _bad_row(i, str(exc)) from exc
            continue
        flat = rows_to_tensor([item], size, index=i)[0]
        if flat.min() < 0 or flat.max() > 255:
            raise _bad_row(i, "pixel values must lie in 0..255")
        pixels.append(flat.round().to(torch.uint8).reshape(shape))
    return torch.stack(pixels)  # (rows, C, H, W) uint8


def predict(bundle: ModelBundle, x: torch.Tensor) -> Prediction:
    """x: decoded rows (see decode), of one request or a batch of them. The stored
    preprocessing runs here, once per batch, exactly as in training."""
    pre = bundle.preprocessor
    with torch.inference_mode():
        x = x.to(bundle.device)
        x = pre.tabular(x) if pre.kind == "tabular" else pre.batch(x)
        out = bundle.model(x)  # (rows, outputs)
        if bundle.task == "regression":
            assert bundle.y_scaler is not None
            values = bundle.y_scaler.inverse(out).squeeze(1)
            return Prediction(values.tolist(), None)
        probs = torch.softmax(out.float(), dim=1)
        labels = probs.argmax(dim=1).tolist()
    classes = bundle.classes or []
    return Prediction([classes[i] for i in labels], probs.tolist(), classes)
