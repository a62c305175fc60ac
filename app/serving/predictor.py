"""The predict path: decode rows, apply the stored preprocessing, run the forward pass."""

import math
from dataclasses import dataclass
from typing import Any

import torch

from app.core.errors import Unprocessable
from app.ml.bundle import ModelBundle
from app.ml.images import ImageDecodeError, decode_base64_image

MAX_TEXT_CHARS = 100_000


@dataclass(frozen=True)
class Prediction:
    predictions: list[Any]
    probabilities: list[list[float]] | None


def rows_to_tensor(inputs: list[Any], width: int, index: int = 0) -> torch.Tensor:
    """Check every row (a list of `width` finite numbers) and stack them: (rows, width).
    `index` numbers the rows in messages when these are part of a larger request."""
    for i, row in enumerate(inputs, start=index):
        if not isinstance(row, list):
            raise _bad_row(i, f"expected a list of {width} numbers, got {type(row).__name__}")
        if len(row) != width:
            raise _bad_row(i, f"expected {width} features, got {len(row)}")
        for value in row:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _bad_row(i, f"features must be numbers, got {type(value).__name__}")
            if not math.isfinite(value) or abs(value) > 3.0e38:
                raise _bad_row(i, "features must be finite float32 numbers")
    return torch.tensor(inputs, dtype=torch.float32)


def _bad_row(index: int, message: str) -> Unprocessable:
    return Unprocessable(
        f"inputs[{index}]: {message}", details=[{"loc": ["inputs", index], "msg": message}]
    )


def model_input(bundle: ModelBundle, inputs: list[Any]) -> torch.Tensor:
    """Request items → the model's input batch, through the preprocessing stored with it."""
    pre = bundle.preprocessor
    if pre.kind == "text":
        return pre.encode_texts(_texts(inputs))
    if pre.kind == "image":
        return pre.batch(_images(inputs, pre.input_shape))
    if pre.feature_names and any(isinstance(row, dict) for row in inputs):
        inputs = [
            _record(row, i, pre.feature_names) if isinstance(row, dict) else row
            for i, row in enumerate(inputs)
        ]
    return pre.tabular(rows_to_tensor(inputs, pre.input_shape[0]))


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


def _images(inputs: list[Any], shape: list[int]) -> torch.Tensor:
    """Each item: a base64 PNG/JPEG, or a flattened image of C*H*W values in 0..255."""
    size = shape[0] * shape[1] * shape[2]
    pixels = []
    for i, item in enumerate(inputs):
        if isinstance(item, str):
            try:
                pixels.append(torch.from_numpy(decode_base64_image(item, shape)))
            except ImageDecodeError as exc:
                raise _bad_row(i, str(exc)) from exc
            continue
        flat = rows_to_tensor([item], size, index=i)[0]
        if flat.min() < 0 or flat.max() > 255:
            raise _bad_row(i, "pixel values must lie in 0..255")
        pixels.append(flat.round().to(torch.uint8).reshape(shape))
    return torch.stack(pixels)  # (rows, C, H, W) uint8


def predict(bundle: ModelBundle, x: torch.Tensor) -> Prediction:
    """x: the model's input batch (see model_input)."""
    with torch.inference_mode():
        out = bundle.model(x)  # (rows, outputs)
        if bundle.task == "regression":
            assert bundle.y_scaler is not None
            values = bundle.y_scaler.inverse(out).squeeze(1)
            return Prediction(values.tolist(), None)
        probs = torch.softmax(out.float(), dim=1)
        labels = probs.argmax(dim=1).tolist()
    classes = bundle.classes or []
    return Prediction([classes[i] for i in labels], probs.tolist())
