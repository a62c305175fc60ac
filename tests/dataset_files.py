"""Upload files made in the test: CSVs, npz archives, PNG/JPEG images and zips of them."""

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image


def csv_bytes(columns: dict[str, list[Any]]) -> bytes:
    return pd.DataFrame(columns).to_csv(index=False).encode()


def npz_bytes(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def image_bytes(
    width: int = 10, height: int = 7, mode: str = "RGB", fmt: str = "PNG", value: int = 128
) -> bytes:
    color: Any = value if mode in ("L", "1") else (value, 255 - value, value // 2)
    buffer = io.BytesIO()
    Image.new(mode, (width, height), color).save(buffer, format=fmt)
    return buffer.getvalue()


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def class_images(
    classes: tuple[str, ...] = ("cats", "dogs"), per_class: int = 3, mode: str = "RGB"
) -> dict[str, bytes]:
    """One folder per class, images of mixed sizes and formats (PNG and JPEG)."""
    entries = {}
    for c, label in enumerate(classes):
        for i in range(per_class):
            fmt, ext = ("JPEG", "jpg") if i % 2 else ("PNG", "png")
            data = image_bytes(8 + 5 * i, 6 + 3 * c, mode, fmt, value=40 * c + 10 * i)
            entries[f"{label}/img{i}.{ext}"] = data
    return entries


class _CreatesFile:
    """Unpickling this calls open(path, "w"): the marker file exists only if it was unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.path, "w"))


def pickle_npz(marker: Path, rows: int = 4) -> bytes:
    """An npz whose X is an object array carrying a pickle payload that creates `marker`."""
    x = np.array([_CreatesFile(marker)] * rows, dtype=object)
    buffer = io.BytesIO()
    np.savez(buffer, X=x, y=np.arange(rows) % 2)
    return buffer.getvalue()
