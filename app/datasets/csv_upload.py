"""csv and text-csv uploads: a table with a label column, or a text and a label column,
read with pandas (type inference, categorical columns one-hot encoded)."""

import codecs
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
from pandas.api.types import is_numeric_dtype

from app.core.config import Settings
from app.datasets.parsing import (
    Parsed,
    UploadOptions,
    check_columns,
    check_decoded_bytes,
    check_rows,
    encode_target,
    fill_missing,
    infer_task,
    invalid,
    over_limit,
)
from app.schemas.dataset import DataKind
from app.schemas.job import Task

SNIFF_BYTES = 64 * 1024


# --- CSV ------------------------------------------------------------------------------------


def sniff_text(source: BinaryIO, what: str) -> None:
    """Refuse binary files up front: pandas would read many of them as one odd column."""
    head = source.read(SNIFF_BYTES)
    source.seek(0)
    if not head.strip():
        raise invalid(f"not a {what}: the file is empty")
    if b"\x00" in head:
        raise invalid(f"not a {what}: the file holds binary data")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError as exc:
        raise invalid(f"not a {what}: not UTF-8 text (byte {exc.start}: {exc.reason})") from exc


def read_header(source: BinaryIO, what: str, settings: Settings) -> list[str]:
    sniff_text(source, what)
    columns = [str(c) for c in _read(source, what, nrows=0).columns]
    check_columns(len(columns), settings)
    return columns


def read_rows(source: BinaryIO, what: str, settings: Settings, **options: Any) -> pd.DataFrame:
    # One row past the limit tells "over the limit" apart from "exactly at it".
    frame = _read(source, what, nrows=settings.max_dataset_rows + 1, **options)
    check_rows(len(frame), settings)
    return frame


def _read(source: BinaryIO, what: str, **options: Any) -> pd.DataFrame:
    source.seek(0)
    try:
        frame = pd.read_csv(source, encoding="utf-8", low_memory=False, **options)
    except pd.errors.EmptyDataError as exc:
        raise invalid(f"not a {what}: the file is empty") from exc
    # ParserError and UnicodeDecodeError are ValueErrors, as is every malformed-input error here.
    except ValueError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise invalid(f"not a {what}: {reason}") from exc
    # pandas turns the extra leading fields of rows longer than the header into an index.
    if not isinstance(frame.index, pd.RangeIndex):
        raise invalid(f"not a {what}: rows have more fields than the header")
    return frame


def require_columns(columns: list[str], required: list[str], field: str) -> None:
    absent = [c for c in required if c not in columns]
    if absent:
        shown = ", ".join(f"'{c}'" for c in columns[:20]) + (" ..." if len(columns) > 20 else "")
        names = " and ".join(f"'{c}'" for c in absent)
        raise invalid(
            f"{field}: column {names} is not in the file (its columns: {shown})",
            details={"missing": absent, "columns": columns[:100]},
        )


def parse_csv(source: BinaryIO, options: UploadOptions, settings: Settings) -> Parsed:
    if not options.target:
        raise invalid("target: required for format csv (the name of the label column)")
    columns = read_header(source, "CSV", settings)
    require_columns(columns, [options.target], "target")
    frame = read_rows(source, "CSV", settings)
    y, target_schema, task = _csv_target(frame[options.target], options, settings)
    features = frame.drop(columns=[options.target])
    if features.shape[1] == 0:
        raise invalid("the CSV has no feature columns besides the target")
    x, names, categorical = encode_features(features, settings)
    sources = [c for c in features.columns for _ in _feature_names(c, categorical.get(c))]
    imputed = fill_missing(x, names, options.impute, sources)
    schema = {
        "kind": DataKind.tabular.value,
        "task": task.value,
        "rows": len(y),
        "features": names,
        **target_schema,
        "columns": columns,
        "target": options.target,
        "categorical": categorical,
        "impute": imputed,
    }
    return Parsed(DataKind.tabular, task, {"x": x, "y": y}, schema)


def _csv_target(
    column: pd.Series, options: UploadOptions, settings: Settings
) -> tuple[np.ndarray, dict[str, Any], Task]:
    missing = int(column.isna().sum())
    if missing:
        raise invalid(f"target: {missing} rows have no value in column '{options.target}'")
    values = column.to_numpy()
    if values.dtype.kind == "O":
        values = values.astype(str)  # text labels; numpy sorts them as classes
    task = options.task or infer_task(values)
    y, schema = encode_target(values, task, "target", settings)
    return y, schema, task


def encode_features(
    frame: pd.DataFrame, settings: Settings
) -> tuple[np.ndarray, list[str], dict[str, list[str]]]:
    """(x float32 (rows, features) with NaN where missing, feature names, categorical vocab).

    Numeric columns stay one feature each; other columns are one-hot encoded in place, one
    feature per value ("color=red"), sorted. A missing categorical value is NaN across its block.
    """
    vocab = {c: _categories(frame[c]) for c in frame.columns if not is_numeric_dtype(frame[c])}
    names = [n for c in frame.columns for n in _feature_names(c, vocab.get(c))]
    if len(names) > settings.max_dataset_columns and vocab:
        widest = max(vocab, key=lambda c: len(vocab[c]))
        message = (
            f"one-hot encoding gives {len(names)} features (column '{widest}' alone has "
            f"{len(vocab[widest])} distinct values)"
        )
        raise over_limit(message, "max_dataset_columns", settings.max_dataset_columns)
    check_columns(len(names), settings)
    check_decoded_bytes(len(frame) * len(names) * 4, "the feature matrix", settings)
    x = np.empty((len(frame), len(names)), dtype=np.float32)
    at = 0
    for column in frame.columns:
        block = _encode_column(frame[column], vocab.get(column))
        x[:, at : at + block.shape[1]] = block
        at += block.shape[1]
    return x, names, vocab


def _categories(column: pd.Series) -> list[str]:
    return sorted({str(v) for v in column.dropna().unique()})


def _feature_names(column: str, vocab: list[str] | None) -> list[str]:
    return [column] if vocab is None else [f"{column}={value}" for value in vocab]


def _encode_column(column: pd.Series, vocab: list[str] | None) -> np.ndarray:
    """(rows, 1) float32 for a numeric column, (rows, len(vocab)) one-hot for a categorical one."""
    if vocab is None:
        with np.errstate(over="ignore"):  # past float32's range becomes inf: reported as missing
            return column.to_numpy(dtype=np.float64).astype(np.float32)[:, None]
    codes = pd.Categorical(column.map(str, na_action="ignore"), categories=vocab).codes
    block = np.zeros((len(column), len(vocab)), dtype=np.float32)
    present = codes >= 0
    block[np.flatnonzero(present), codes[present]] = 1.0
    block[~present] = np.nan
    return block


# --- text CSV -------------------------------------------------------------------------------


def parse_text_csv(source: BinaryIO, options: UploadOptions, settings: Settings) -> Parsed:
    """Columns text and label: class labels, or numbers with task=regression."""
    task = options.task or Task.classification
    columns = read_header(source, "CSV", settings)
    require_columns(columns, ["text", "label"], "columns")
    # keep_default_na=False: a text that reads "NA" or "null" is a text, not a missing value.
    frame = read_rows(
        source,
        "CSV",
        settings,
        usecols=["text", "label"],
        dtype={"text": str},
        keep_default_na=False,
    )
    texts = frame["text"]
    _refuse_blank(texts, "text", "empty text")
    labels = frame["label"].to_numpy()
    if labels.dtype.kind == "O":
        _refuse_blank(frame["label"].astype(str), "label", "no label")
        labels = labels.astype(str)
    longest = int(texts.str.len().max())
    check_decoded_bytes(len(texts) * longest * 4, "the texts (padded to the longest)", settings)
    y, target_schema = encode_target(labels, task, "label", settings)
    lengths = texts.str.len()
    schema = {
        "kind": DataKind.text.value,
        "task": task.value,
        "rows": len(y),
        **target_schema,
        "mean_length": round(float(lengths.mean()), 2),
        "max_length": longest,
    }
    # '<U…' keeps the array free of Python objects, so it loads without pickle.
    stored = np.array(texts.tolist(), dtype=f"<U{longest}")
    return Parsed(DataKind.text, task, {"texts": stored, "y": y}, schema)


def _refuse_blank(column: pd.Series, field: str, what: str) -> None:
    blank = np.flatnonzero(column.str.strip().str.len().to_numpy() == 0)
    if blank.size:
        rows = ", ".join(str(i + 1) for i in blank[:10]) + (" ..." if blank.size > 10 else "")
        raise invalid(
            f"{field}: {blank.size} rows have {what} (data rows {rows})",
            details={"rows": [int(i) + 1 for i in blank[:100]], "count": int(blank.size)},
        )
