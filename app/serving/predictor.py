"""The predict path: decode rows, apply the stored preprocessing, run the forward pass."""

import math
from dataclasses import dataclass
from typing import Any

import torch

from app.core.errors import Unprocessable
from app.ml.bundle import ModelBundle


@dataclass(frozen=True)
class Prediction:
    predictions: list[Any]
    probabilities: list[list[float]] | None


def rows_to_tensor(inputs: list[Any], width: int) -> torch.Tensor:
    """Check every row (a list of `width` finite numbers) and stack them: (rows, width)."""
    for i, row in enumerate(inputs):
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


def predict(bundle: ModelBundle, x: torch.Tensor) -> Prediction:
    """x: (rows, features) raw values, as the dataset had them."""
    with torch.inference_mode():
        out = bundle.model(bundle.x_scaler(x))  # (rows, outputs)
        if bundle.task == "regression":
            assert bundle.y_scaler is not None
            values = bundle.y_scaler.inverse(out).squeeze(1)
            return Prediction(values.tolist(), None)
        probs = torch.softmax(out, dim=1)
        labels = probs.argmax(dim=1).tolist()
    classes = bundle.classes or []
    return Prediction([classes[i] for i in labels], probs.tolist())
