"""Parsing uploads into arrays and schemas: every format's encoding, and every refusal with the
status and message a user sees. In memory only (BytesIO), no database."""

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from app.core.config import Settings
from app.core.errors import AppError
from app.datasets.csv_upload import parse_csv, parse_text_csv
from app.datasets.formats import parse_upload
from app.datasets.images_zip_upload import parse_images_zip
from app.datasets.npz_upload import parse_npz
from app.datasets.parsing import Parsed, UploadOptions
from app.datasets.text_upload import parse_text
from app.schemas.dataset import DataKind, DatasetFormat
from app.schemas.job import Task
from tests.dataset_files import (
    class_images,
    csv_bytes,
    image_bytes,
    npz_bytes,
    pickle_npz,
    zip_bytes,
)

SETTINGS = Settings()


def csv(data: bytes, settings: Settings = SETTINGS, **options: Any) -> Parsed:
    return parse_csv(io.BytesIO(data), UploadOptions(**options), settings)


def text_csv(data: bytes, **options: Any) -> Parsed:
    return parse_text_csv(io.BytesIO(data), UploadOptions(**options), SETTINGS)


def text(data: bytes, **options: Any) -> Parsed:
    return parse_text(io.BytesIO(data), UploadOptions(**options), SETTINGS)


def npz(data: bytes, settings: Settings = SETTINGS, **options: Any) -> Parsed:
    return parse_npz(io.BytesIO(data), UploadOptions(**options), settings)


def images(data: bytes, settings: Settings = SETTINGS, **options: Any) -> Parsed:
    return parse_images_zip(io.BytesIO(data), UploadOptions(**options), settings)


def refused(call: Any, status: int, match: str, code: str | None = None) -> AppError:
    with pytest.raises(AppError, match=match) as caught:
        call()
    assert caught.value.status_code == status, caught.value.message
    if code is not None:
        assert caught.value.code == code
    return caught.value


# --- csv ------------------------------------------------------------------------------------


def test_csv_with_string_labels() -> None:
    data = csv_bytes({"a": [1.0, 2.0, 3.0, 4.0], "b": [1, 0, 1, 0], "kind": ["z", "x", "z", "y"]})
    parsed = csv(data, target="kind")
    assert (parsed.kind, parsed.task) == (DataKind.tabular, Task.classification)
    assert parsed.schema["classes"] == ["x", "y", "z"]
    assert parsed.schema["class_counts"] == {"x": 1, "y": 1, "z": 2}
    assert parsed.schema["features"] == ["a", "b"] and parsed.schema["rows"] == 4
    assert parsed.arrays["y"].dtype == np.int64 and parsed.arrays["y"].tolist() == [2, 0, 2, 1]
    x = parsed.arrays["x"]
    assert x.dtype == np.float32 and x.tolist() == [[1, 1], [2, 0], [3, 1], [4, 0]]


def test_csv_one_hot_encodes_categorical_columns_in_place() -> None:
    data = csv_bytes(
        {"size": [1.5, 2.5, 3.5], "color": ["red", "blue", "red"], "n": [7, 8, 9], "y": [0, 1, 1]}
    )
    parsed = csv(data, target="y")
    assert parsed.schema["features"] == ["size", "color=blue", "color=red", "n"]
    assert parsed.schema["categorical"] == {"color": ["blue", "red"]}
    assert parsed.schema["columns"] == ["size", "color", "n", "y"]
    assert parsed.arrays["x"].tolist() == [[1.5, 0, 1, 7], [2.5, 1, 0, 8], [3.5, 0, 1, 9]]
    assert parsed.schema["classes"] == [0, 1]


def test_csv_task_follows_the_target() -> None:
    rng = np.random.default_rng(0)
    floats = rng.normal(size=40).round(3).tolist()
    data = csv_bytes({"a": list(range(40)), "t": floats})
    parsed = csv(data, target="t")
    assert parsed.task == Task.regression and parsed.arrays["y"].dtype == np.float32
    assert parsed.schema["classes"] is None and "target_stats" in parsed.schema
    # integer-valued floats and few distinct values are labels
    few = csv_bytes({"a": list(range(40)), "t": [float(i % 3) for i in range(40)]})
    assert csv(few, target="t").schema["classes"] == [0, 1, 2]
    # and the form field decides when it is given
    assert csv(few, target="t", task=Task.regression).task == Task.regression
    text = csv_bytes({"a": [1, 2], "t": ["p", "q"]})
    refused(lambda: csv(text, target="t", task=Task.regression), 422, "regression needs numbers")


def test_csv_missing_values_are_refused_or_imputed_with_the_mean() -> None:
    data = csv_bytes(
        {"a": [1.0, None, 3.0, 5.0], "c": ["u", None, "v", "u"], "y": ["p", "q", "p", "q"]}
    )
    error = refused(lambda: csv(data, target="y"), 422, r"'a' \(1 rows\), 'c' \(1 rows\)")
    assert "impute=mean" in error.message
    parsed = csv(data, target="y", impute="mean")
    x = parsed.arrays["x"]  # a, c=u, c=v
    assert np.allclose(x[1], [3.0, 2 / 3, 1 / 3])  # each feature's mean over the other rows
    assert parsed.schema["impute"]["filled"] == {"a": 1, "c=u": 1, "c=v": 1}
    assert parsed.schema["impute"]["values"]["a"] == 3.0


def test_csv_infinity_counts_as_missing() -> None:
    data = b"a,y\n1,0\ninf,1\n3,0\n1e300,1\n"
    refused(lambda: csv(data, target="y"), 422, r"'a' \(2 rows\)")
    assert csv(data, target="y", impute="mean").arrays["x"][:, 0].tolist() == [1, 2, 3, 2]


@pytest.mark.parametrize(
    ("data", "options", "status", "match"),
    [
        (image_bytes(), {"target": "y"}, 422, "not a CSV: the file holds binary data"),
        (zip_bytes({"a.csv": b"a,b\n1,2\n" * 50}), {"target": "y"}, 422, "not a CSV"),
        (b"a,y\n\xe9t\xe9,1\n", {"target": "y"}, 422, "not a CSV: not UTF-8 text"),
        (b"a,y\n1,2,3,4\n", {"target": "y"}, 422, "not a CSV: rows have more fields"),
        (b"a,y\n1,0\n1,2,3\n", {"target": "y"}, 422, "not a CSV: Error tokenizing"),
        (b"\n\n", {"target": "y"}, 422, "not a CSV: the file is empty"),
        (b"a,y\n", {"target": "y"}, 422, "no rows"),
        (b"a,b\n1,2\n", {"target": "label"}, 422, "target: column 'label' is not in the file"),
        (b"a,b\n1,2\n", {}, 422, "target: required"),
        (b"a,y\n1,1\n2,1\n", {"target": "y"}, 422, r"target: only one class \(1\)"),
        (b"a,y\n1,\n2,1\n3,0\n", {"target": "y"}, 422, "target: 1 rows have no value"),
        (b"y\n1\n0\n", {"target": "y"}, 422, "no feature columns"),
    ],
)
def test_csv_refusals(data: bytes, options: dict[str, Any], status: int, match: str) -> None:
    refused(lambda: csv(data, **options), status, match)


def test_csv_limits() -> None:
    rows = csv_bytes({"a": list(range(11)), "y": [i % 2 for i in range(11)]})
    refused(lambda: csv(rows, Settings(max_dataset_rows=10), target="y"), 413, "more than 10 rows")
    csv(rows, Settings(max_dataset_rows=11), target="y")
    wide = csv_bytes({"id": [f"row{i}" for i in range(6)], "y": [0, 1] * 3})
    small = Settings(max_dataset_columns=5)
    refused(lambda: csv(wide, small, target="y"), 413, "column 'id' alone has 6 distinct")
    refused(lambda: csv(rows, Settings(max_dataset_bytes=40), target="y"), 413, "in memory")


# --- text-csv -------------------------------------------------------------------------------


def test_text_csv() -> None:
    data = csv_bytes({"text": ["good film", "NA", "bad", "meh ok"], "label": ["pos", "neg"] * 2})
    parsed = text_csv(data)
    assert (parsed.kind, parsed.task) == (DataKind.text, Task.classification)
    texts = parsed.arrays["texts"]
    assert texts.dtype.kind == "U" and texts.tolist() == ["good film", "NA", "bad", "meh ok"]
    assert parsed.schema["classes"] == ["neg", "pos"] and parsed.schema["rows"] == 4
    assert parsed.schema["mean_length"] == 5.0 and parsed.schema["max_length"] == 9
    assert parsed.arrays["y"].tolist() == [1, 0, 1, 0]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"text,label\nhi,a\n,b\n  ,a\nyo,b\n", r"text: 2 rows have empty text \(data rows 2, 3\)"),
        (b"text,label\nhi,\nyo,b\n", "label: 1 rows have no label"),
        (b"text,y\nhi,a\n", "columns: column 'label' is not in the file"),
        (b"body,y\nhi,a\n", "columns: column 'text' and 'label'"),
        (b"text,label\nhi,a\nyo,a\n", "label: only one class"),
        (b"\x00\x01binary", "not a CSV: the file holds binary data"),
    ],
)
def test_text_csv_refusals(data: bytes, match: str) -> None:
    refused(lambda: text_csv(data), 422, match)


def test_text_csv_holds_classes_or_numbers() -> None:
    parsed = text_csv(b"text,label\nhi,0.5\nyo,2\nhey,1.25\n", task=Task.regression)
    assert (parsed.kind, parsed.task) == (DataKind.text, Task.regression)
    assert parsed.arrays["y"].tolist() == [0.5, 2.0, 1.25] and parsed.schema["classes"] is None
    words = b"text,label\nhi,a\nyo,b\n"
    refused(lambda: text_csv(words, task=Task.regression), 422, "regression needs numbers")


def test_a_text_corpus_is_lines_or_json_lines() -> None:
    plain = text(b"once upon a time\n\n  \nthe end\n")
    assert (plain.kind, plain.task) == (DataKind.text, Task.generation)
    assert plain.arrays["texts"].tolist() == ["once upon a time", "the end"]
    assert plain.schema["layout"] == "lines" and plain.schema["rows"] == 2
    jsonl = text(b'{"text": "line one\\nand two"}\n{"text": "three", "id": 3}\n')
    assert jsonl.arrays["texts"].tolist() == ["line one\nand two", "three"]
    assert jsonl.schema["layout"] == "json-lines"
    refused(lambda: text(b'{"text": "a"}\nnot json\n'), 422, "line 2: not JSON")
    refused(
        lambda: text(b'{"text": "a"}\n{"body": "b"}\n'),
        422,
        'line 2: needs a non-empty string "text"',
    )
    refused(lambda: text(b"\n \n"), 422, "the file is empty")
    refused(lambda: text(b"\xff\xfe bad"), 422, "not UTF-8")
    tiny = Settings(max_dataset_rows=2)
    refused(lambda: parse_text(io.BytesIO(b"a\nb\nc\n"), UploadOptions(), tiny), 413, "rows")


def test_each_format_says_which_tasks_it_holds() -> None:
    for fmt, task in [
        (DatasetFormat.text, Task.classification),
        (DatasetFormat.csv, Task.generation),
        (DatasetFormat.text_csv, Task.generation),
        (DatasetFormat.images_zip, Task.regression),
    ]:
        refused(
            lambda fmt=fmt, task=task: parse_upload(
                fmt, io.BytesIO(b"x"), UploadOptions(task=task), SETTINGS
            ),
            422,
            f"task: a {fmt} dataset is for",
        )


# --- npz ------------------------------------------------------------------------------------


def test_npz_tabular_classification_and_regression() -> None:
    x = np.arange(12, dtype=np.float64).reshape(6, 2)
    parsed = npz(npz_bytes(X=x, y=np.array([3, 1, 3, 1, 2, 2])))
    assert (parsed.kind, parsed.task) == (DataKind.tabular, Task.classification)
    assert parsed.schema["classes"] == [1, 2, 3] and parsed.schema["features"] == ["x0", "x1"]
    assert parsed.arrays["y"].tolist() == [2, 0, 2, 0, 1, 1]
    assert parsed.arrays["x"].dtype == np.float32
    regression = npz(npz_bytes(X=x, y=np.linspace(0, 1, 6)))
    assert regression.task == Task.regression and regression.arrays["y"].dtype == np.float32
    strings = npz(npz_bytes(X=x, y=np.array(["b", "a"] * 3)))
    assert strings.schema["classes"] == ["a", "b"]


def test_npz_images() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (4, 3, 5, 6), dtype=np.uint8)
    parsed = npz(npz_bytes(X=pixels, y=np.array([0, 1, 0, 1])))
    assert parsed.kind == DataKind.image and parsed.schema["image_shape"] == [3, 5, 6]
    assert np.array_equal(parsed.arrays["x"], pixels)
    gray = npz(npz_bytes(X=np.full((2, 4, 4), 0.5), y=np.array([0, 1])))
    assert gray.schema["image_shape"] == [1, 4, 4] and gray.arrays["x"].dtype == np.uint8
    assert int(gray.arrays["x"].max()) == 128 and gray.schema["scaled_from"] == "float [0, 1]"


def test_npz_never_unpickles(tmp_path: Path) -> None:
    control, marker = tmp_path / "control", tmp_path / "marker"
    # the payload is live: loading it with pickle allowed runs it
    np.load(io.BytesIO(pickle_npz(control)), allow_pickle=True)["X"]
    assert control.exists()
    refused(lambda: npz(pickle_npz(marker)), 422, "array 'X' holds Python objects")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("data", "status", "match"),
    [
        (npz_bytes(X=np.zeros((3, 2))), 422, "arrays 'X' and 'y' are required"),
        (npz_bytes(X=np.zeros((3, 2)), y=np.arange(4)), 422, r"one value per row of X \(3\)"),
        (npz_bytes(X=np.zeros((2, 5, 5, 3)), y=np.arange(2)), 422, "channels-last"),
        (npz_bytes(X=np.zeros(3), y=np.arange(3)), 422, "X: must be 2-D"),
        (npz_bytes(X=np.array([[1.0], [np.nan]]), y=np.arange(2)), 422, "'x0' \\(1 rows\\)"),
        (npz_bytes(X=np.zeros((2, 1)), y=np.array([0.5, np.nan])), 422, "y: 1 values are missing"),
        (npz_bytes(X=np.zeros((2, 1)), y=np.array([1, 1])), 422, "y: only one class"),
        (npz_bytes(X=np.full((2, 2, 2), 300.0), y=np.arange(2)), 422, r"\[0, 1\] or \[0, 255\]"),
        (b"a,b\n1,2\n", 422, "not an npz"),
    ],
)
def test_npz_refusals(data: bytes, status: int, match: str) -> None:
    refused(lambda: npz(data), status, match)


def test_a_bare_npy_file_is_not_an_npz() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3))
    refused(lambda: npz(buffer.getvalue()), 422, "not an npz")


def test_npz_size_is_checked_from_the_header() -> None:
    data = npz_bytes(X=np.zeros((100, 10)), y=np.arange(100) % 2)
    refused(lambda: npz(data, Settings(max_dataset_bytes=4000)), 413, "array 'X' would take 8000")


# --- images-zip -----------------------------------------------------------------------------


def test_images_zip_resizes_every_image() -> None:
    parsed = images(zip_bytes(class_images(("cats", "dogs", "eels"))), image_size=16)
    assert (parsed.kind, parsed.task) == (DataKind.image, Task.classification)
    assert parsed.schema["image_shape"] == [3, 16, 16]
    assert parsed.schema["classes"] == ["cats", "dogs", "eels"]
    assert parsed.schema["class_counts"] == {"cats": 3, "dogs": 3, "eels": 3}
    assert parsed.arrays["x"].shape == (9, 3, 16, 16) and parsed.arrays["x"].dtype == np.uint8
    assert parsed.arrays["y"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_images_zip_channels() -> None:
    gray = zip_bytes(class_images(mode="L"))
    assert images(gray).schema["image_shape"] == [1, 32, 32]
    assert images(gray, channels=3).schema["image_shape"] == [3, 32, 32]
    mixed = zip_bytes({**class_images(mode="L"), "dogs/color.png": image_bytes(mode="RGB")})
    assert images(mixed).schema["image_shape"] == [3, 32, 32]
    assert images(zip_bytes(class_images()), channels=1).schema["image_shape"] == [1, 32, 32]


def test_images_zip_accepts_a_wrapping_folder_and_skips_macos_metadata() -> None:
    entries = {f"photos/{name}": data for name, data in class_images().items()}
    entries["__MACOSX/photos/._img0.png"] = b"resource fork"
    entries["photos/cats/.DS_Store"] = b"\x00\x00"
    parsed = images(zip_bytes(entries))
    assert parsed.schema["classes"] == ["cats", "dogs"] and parsed.schema["rows"] == 6


@pytest.mark.parametrize(
    ("extra", "code", "match"),
    [
        ({"cats/notes.txt": b"hello"}, "invalid_dataset", "'cats/notes.txt': not a PNG or JPEG"),
        ({"cats/anim.gif": b"GIF89a" + b"\x00" * 20}, "invalid_dataset", "'cats/anim.gif'"),
        ({"../evil.png": image_bytes()}, "unsafe_path", "'../evil.png' has a '..' component"),
        ({"cats/../../evil.png": image_bytes()}, "unsafe_path", "'..' component"),
        ({"/etc/evil.png": image_bytes()}, "unsafe_path", "an absolute path"),
        ({"C:/evil.png": image_bytes()}, "unsafe_path", "an absolute path"),
        ({"cats\\evil.png": image_bytes()}, "unsafe_path", "a backslash"),
        ({"loose.png": image_bytes()}, "invalid_dataset", "one folder per class"),
        ({"cats/deep/x.png": image_bytes()}, "invalid_dataset", "one folder per class"),
    ],
)
def test_images_zip_refusals(extra: dict[str, bytes], code: str, match: str) -> None:
    refused(lambda: images(zip_bytes({**class_images(), **extra})), 422, match, code)


def test_images_zip_needs_two_classes_and_images() -> None:
    refused(lambda: images(zip_bytes(class_images(("cats",)))), 422, "one class folder")
    refused(lambda: images(zip_bytes({"cats/": b""})), 422, "holds no images")
    refused(lambda: images(b"PK not really"), 422, "not a zip archive")
    refused(lambda: images(zip_bytes(class_images()), image_size=2), 422, "image_size")
    refused(lambda: images(zip_bytes(class_images()), image_size=300), 422, "image_size")
    refused(lambda: images(zip_bytes(class_images()), channels=2), 422, "channels: 1")


def test_images_zip_limits_come_from_the_directory() -> None:
    data = zip_bytes(class_images())  # 6 files
    refused(lambda: images(data, Settings(max_zip_files=5)), 413, "6 entries")
    total = sum(len(v) for v in class_images().values())
    small = Settings(max_zip_uncompressed_bytes=total - 1)
    refused(lambda: images(data, small), 413, f"unpacks to {total} bytes")
    refused(lambda: images(data, Settings(max_dataset_bytes=1000)), 413, "in memory")


# Pillow warns at open past MAX_IMAGE_PIXELS; the parser then refuses the image itself.
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bombs_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 30 * 30)
    data = zip_bytes({**class_images(), "cats/big.png": image_bytes(40, 40)})
    refused(lambda: images(data), 422, "'cats/big.png': the image is 40x40, over the limit")
    refused(lambda: images(data, channels=3), 422, "'cats/big.png': the image is 40x40")
