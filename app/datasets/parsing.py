"""What every upload format shares: the options a file is read with, the parsed result (the
arrays and schema a dataset stores), the errors and limits, label and target encoding, and
missing values. csv_upload, npz_upload and images_zip_upload hold the formats themselves.

Pure functions (no database, no paths). A bad file is refused with an AppError that says what
is wrong (422) or which limit it passes (413).
"""

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from app.core.config import Settings
from app.core.errors import PayloadTooLarge, Unprocessable
from app.schemas.dataset import DataKind
from app.schemas.job import Task

# A float target with more distinct values than this (and not all integers) is a regression one.
MAX_INFERRED_CLASSES = 20


@dataclass(frozen=True)
class UploadOptions:
    """The form fields that say how to read a file (each format reads the ones it needs)."""

    target: str | None = None  # csv: the label column
    task: Task | None = None  # None: follows from the labels
    image_size: int = 32  # images-zip: every image is resized to this square
    channels: int | None = None  # images-zip: 1 or 3; None means 1 if all are grayscale
    impute: Literal["mean"] | None = None  # tabular: fill NaN/Inf with the column mean


@dataclass(frozen=True)
class Parsed:
    kind: DataKind
    task: Task
    arrays: dict[str, np.ndarray]  # what data.npz holds: x or texts, and y
    schema: dict[str, Any]


def invalid(message: str, details: Any = None) -> Unprocessable:
    return Unprocessable(message, details=details, code="invalid_dataset")


def over_limit(message: str, setting: str, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"{message} (the limit is {limit}: TRAINSERVE_{setting.upper()})",
        details={"setting": setting, "limit": limit},
    )


def check_rows(rows: int, settings: Settings) -> None:
    if rows > settings.max_dataset_rows:
        limit = settings.max_dataset_rows
        raise over_limit(f"the dataset has more than {limit} rows", "max_dataset_rows", limit)
    if rows == 0:
        raise invalid("the dataset has no rows")


def check_columns(columns: int, settings: Settings) -> None:
    limit = settings.max_dataset_columns
    if columns > limit:
        raise over_limit(f"the dataset has {columns} feature columns", "max_dataset_columns", limit)


def check_decoded_bytes(nbytes: int, what: str, settings: Settings) -> None:
    # Checked before allocating: a small upload can decode into something huge.
    limit = settings.max_dataset_bytes
    if nbytes > limit:
        raise over_limit(f"{what} would take {nbytes} bytes in memory", "max_dataset_bytes", limit)


# --- labels and targets ---------------------------------------------------------------------


def json_label(value: Any) -> Any:
    """A class label as JSON holds it: numpy scalars become Python ones, 2.0 becomes 2."""
    label = value.item() if isinstance(value, np.generic) else value
    if isinstance(label, float) and label.is_integer():
        return int(label)
    return label


def infer_task(values: np.ndarray) -> Task:
    if values.dtype.kind != "f":
        return Task.classification  # integers, booleans and strings are labels
    distinct = np.unique(values)
    integral = bool(np.all(np.mod(distinct, 1) == 0))
    if len(distinct) > MAX_INFERRED_CLASSES and not integral:
        return Task.regression
    return Task.classification


def encode_target(
    values: np.ndarray, task: Task, field: str, settings: Settings
) -> tuple[np.ndarray, dict[str, Any]]:
    """(y, schema part): int64 class indices into sorted classes, or a float32 target."""
    if values.dtype.kind in "fc" and not np.all(np.isfinite(values)):
        count = int(np.count_nonzero(~np.isfinite(values)))
        raise invalid(f"{field}: {count} values are missing or not finite")
    if task == Task.regression:
        return _regression_target(values, field)
    return encode_classes(values, field, settings)


def _regression_target(values: np.ndarray, field: str) -> tuple[np.ndarray, dict[str, Any]]:
    if values.dtype.kind not in "biuf":
        raise invalid(f"{field}: regression needs numbers, and these are {values.dtype} values")
    y = values.astype(np.float32)
    if not np.all(np.isfinite(y)):
        raise invalid(f"{field}: values too large for float32")
    stats = {"mean": float(y.mean()), "std": float(y.std()), "min": float(y.min())}
    stats["max"] = float(y.max())
    return y, {"classes": None, "class_counts": None, "target_stats": stats}


def encode_classes(
    values: np.ndarray, field: str, settings: Settings
) -> tuple[np.ndarray, dict[str, Any]]:
    classes, index = np.unique(values, return_inverse=True)
    labels = [json_label(c) for c in classes]
    if len(labels) < 2:
        found = f"only one class ({labels[0]!r})" if labels else "no classes"
        raise invalid(f"{field}: {found}; classification needs at least 2")
    if len(labels) > settings.max_classes:
        message = f"{field}: {len(labels)} classes (a continuous target? send task=regression)"
        raise over_limit(message, "max_classes", settings.max_classes)
    counts = np.bincount(index, minlength=len(labels))
    class_counts = {str(label): int(n) for label, n in zip(labels, counts, strict=True)}
    return index.astype(np.int64), {"classes": labels, "class_counts": class_counts}


# --- missing values -------------------------------------------------------------------------


def fill_missing(
    x: np.ndarray, names: list[str], impute: str | None, sources: list[str] | None = None
) -> dict[str, Any] | None:
    """Refuse NaN/Inf in x (rows, features), or fill each in place with its column's mean.

    `sources` names the file's column behind each feature (a one-hot block shares one), so an
    error speaks of the columns the user wrote.
    """
    bad = ~np.isfinite(x)
    counts = bad.sum(axis=0)
    columns = [int(i) for i in np.flatnonzero(counts)]
    if not columns:
        return None
    if impute is None:
        raise _missing_values(columns, counts, sources or names)
    means = {names[i]: _fill_column(x, bad[:, i], i, names[i]) for i in columns}
    filled = {names[i]: int(counts[i]) for i in columns}
    return {"strategy": impute, "values": means, "filled": filled}


def _missing_values(columns: list[int], counts: np.ndarray, sources: list[str]) -> Unprocessable:
    missing: dict[str, int] = {}
    for i in columns:
        missing[sources[i]] = max(missing.get(sources[i], 0), int(counts[i]))
    listed = ", ".join(f"'{name}' ({n} rows)" for name, n in list(missing.items())[:5])
    more = f" and {len(missing) - 5} more columns" if len(missing) > 5 else ""
    return invalid(
        f"features: missing or infinite values in {listed}{more}; fix the file or send impute=mean",
        details={"missing": missing},
    )


def _fill_column(x: np.ndarray, bad: np.ndarray, column: int, name: str) -> float:
    finite = x[~bad, column]
    if finite.size == 0:
        raise invalid(f"features: column '{name}' has no values to take a mean of")
    mean = float(finite.mean(dtype=np.float64))
    x[bad, column] = mean
    return mean
