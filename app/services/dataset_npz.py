"""npz uploads (np.savez(file, X=X, y=y)): tabular rows or images, never unpickled."""

import math
import zipfile
from typing import Any, BinaryIO

import numpy as np

from app.core.config import Settings
from app.schemas.dataset import DataKind
from app.schemas.job import Task
from app.services.dataset_parsers import (
    Parsed,
    UploadOptions,
    check_columns,
    check_decoded_bytes,
    check_rows,
    encode_target,
    fill_missing,
    invalid,
)

NPZ_ARRAYS = ("X", "y")
_NPY_HEADERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def parse_npz(source: BinaryIO, options: UploadOptions, settings: Settings) -> Parsed:
    arrays = read_npz(source, settings)
    x = arrays["X"]
    if x.ndim not in (2, 3, 4):
        raise invalid(
            f"X: must be 2-D (rows, features) or images (N, C, H, W) or (N, H, W), "
            f"got shape {x.shape}"
        )
    if x.dtype.kind not in "biuf":
        raise invalid(f"X: must hold numbers, not {x.dtype}")
    check_rows(len(x), settings)
    y, target_schema, task = _npz_target(arrays["y"], len(x), options, settings)
    if x.ndim == 2:
        return _npz_tabular(x, y, task, target_schema, options, settings)
    return _npz_images(x, y, task, target_schema, settings)


def read_npz(source: BinaryIO, settings: Settings) -> dict[str, np.ndarray]:
    """X and y from an np.savez archive; never unpickles (allow_pickle=False, object arrays
    refused from their header before anything is read)."""
    if not zipfile.is_zipfile(source):
        raise invalid("not an npz: save the arrays with np.savez(file, X=X, y=y)")
    source.seek(0)
    try:
        with zipfile.ZipFile(source) as archive:
            _check_npz_members(archive, settings)
        source.seek(0)
        with np.load(source, allow_pickle=False) as npz:
            return {name: npz[name] for name in NPZ_ARRAYS}
    # BadZipFile, a bad .npy header and a refused object array all mean "not a usable npz".
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise invalid(f"not a usable npz: {exc}") from exc


def _check_npz_members(archive: zipfile.ZipFile, settings: Settings) -> None:
    members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
    absent = [name for name in NPZ_ARRAYS if name not in members]
    if absent:
        raise invalid(
            f"npz: arrays 'X' and 'y' are required; it has {sorted(members) or 'none'}",
            details={"missing": absent},
        )
    for name in NPZ_ARRAYS:
        _check_npy_header(archive, members[name], name, settings)


def _check_npy_header(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, settings: Settings
) -> None:
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        reader = _NPY_HEADERS.get(version)
        if reader is None:
            raise invalid(f"npz: array '{name}' uses .npy format {version}; save with np.savez")
        shape, _fortran_order, dtype = reader(member)
    if dtype.hasobject:
        raise invalid(
            f"npz: array '{name}' holds Python objects ({dtype}); only numeric and string "
            "arrays are accepted (nothing in it was loaded)"
        )
    nbytes = math.prod(shape) * dtype.itemsize
    check_decoded_bytes(nbytes, f"array '{name}'", settings)
    if nbytes > info.file_size:
        raise invalid(f"npz: array '{name}' is truncated")


def _npz_target(
    y: np.ndarray, rows: int, options: UploadOptions, settings: Settings
) -> tuple[np.ndarray, dict[str, Any], Task]:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != rows:
        raise invalid(f"y: must be 1-D with one value per row of X ({rows}), got shape {y.shape}")
    if y.dtype.kind not in "biufU":
        raise invalid(f"y: must hold numbers or strings, not {y.dtype}")
    task = options.task or (Task.regression if y.dtype.kind == "f" else Task.classification)
    encoded, schema = encode_target(y, task, "y", settings)
    return encoded, schema, task


def _npz_tabular(
    x: np.ndarray,
    y: np.ndarray,
    task: Task,
    target_schema: dict[str, Any],
    options: UploadOptions,
    settings: Settings,
) -> Parsed:
    check_columns(x.shape[1], settings)
    with np.errstate(over="ignore"):  # past float32's range becomes inf: reported as missing
        features = np.ascontiguousarray(x, dtype=np.float32)
    names = [f"x{i}" for i in range(x.shape[1])]
    imputed = fill_missing(features, names, options.impute)
    schema = {
        "kind": DataKind.tabular.value,
        "task": task.value,
        "rows": len(y),
        "features": names,
        **target_schema,
        "impute": imputed,
    }
    return Parsed(DataKind.tabular, task, {"x": features, "y": y}, schema)


def _npz_images(
    x: np.ndarray, y: np.ndarray, task: Task, target_schema: dict[str, Any], settings: Settings
) -> Parsed:
    images = x[:, None] if x.ndim == 3 else x  # (N, H, W) is grayscale: (N, 1, H, W)
    n, c, h, w = images.shape
    if c not in (1, 3):
        raise invalid(
            f"X: images must be (N, C, H, W) with C 1 or 3, got shape {x.shape} "
            "(channels-last data: X.transpose(0, 3, 1, 2))"
        )
    if max(h, w) > settings.max_image_size or min(h, w) < 1:
        raise invalid(f"X: images must be at most {settings.max_image_size} pixels a side")
    pixels, scaled = to_uint8(images)
    schema = {
        "kind": DataKind.image.value,
        "task": task.value,
        "rows": n,
        "image_shape": [c, h, w],
        **target_schema,
        "scaled_from": scaled,
    }
    return Parsed(DataKind.image, task, {"x": pixels, "y": y}, schema)


def to_uint8(images: np.ndarray) -> tuple[np.ndarray, str]:
    """Pixels as uint8, and how they were read: uint8, 0-255 numbers, or floats in [0, 1]."""
    if images.dtype == np.uint8:
        return np.ascontiguousarray(images), "uint8"
    if images.dtype.kind == "b":
        raise invalid("X: boolean images are not accepted; send uint8 pixels")
    if images.dtype.kind == "f" and not np.all(np.isfinite(images)):
        raise invalid("X: images hold NaN or infinite values")
    low, high = float(images.min()), float(images.max())
    if low < 0 or high > 255:
        raise invalid(f"X: pixel values must be in [0, 1] or [0, 255], found [{low}, {high}]")
    if images.dtype.kind == "f" and high <= 1.0:
        return np.rint(images * 255.0).astype(np.uint8), "float [0, 1]"
    return np.rint(images).astype(np.uint8), "numbers [0, 255]"
