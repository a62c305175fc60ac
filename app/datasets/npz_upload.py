"""npz uploads (np.savez(file, X=X, y=y)): tabular rows or images, never unpickled."""

import math
import zipfile
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal

import numpy as np

from app.core.config import Settings
from app.datasets.parsing import (
    Parsed,
    UploadOptions,
    check_columns,
    check_decoded_bytes,
    check_rows,
    encode_target,
    fill_missing,
    invalid,
)
from app.schemas.dataset import DataKind
from app.schemas.job import Task

NPZ_ARRAYS = ("X", "y")
NPZ_MEMBERS = {f"{name}.npy": name for name in NPZ_ARRAYS}  # exactly what np.savez writes
_NPY_HEADERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class _Header:
    """A member's .npy header: what its array will take, known before any of it is read."""

    info: zipfile.ZipInfo
    shape: tuple[int, ...]
    fortran_order: bool
    dtype: np.dtype[Any]
    offset: int  # where the data starts in the member

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


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
    """X and y from an np.savez archive, read here member by member rather than by np.load:
    the archive holds exactly X.npy and y.npy, each array is bounded by its header (alone
    and together) before any of it is read, and must be exactly as long as its header says.
    Nothing is unpickled: an object array is refused from its header."""
    if not zipfile.is_zipfile(source):
        raise invalid("not an npz: save the arrays with np.savez(file, X=X, y=y)")
    source.seek(0)
    try:
        with zipfile.ZipFile(source) as archive:
            members = _npz_members(archive)
            headers = {
                name: _read_header(archive, members[name], name, settings) for name in NPZ_ARRAYS
            }
            total = sum(header.nbytes for header in headers.values())
            check_decoded_bytes(total, "arrays 'X' and 'y' together", settings)
            return {name: _read_array(archive, headers[name], name) for name in NPZ_ARRAYS}
    # BadZipFile (a CRC or size that does not match, too) and a bad .npy header mean the same.
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise invalid(f"not a usable npz: {exc}") from exc


def _npz_members(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """The X.npy and y.npy entries. Any other entry (a name np.load would also read, such as
    'X', a folder, a second 'X.npy') and any encrypted one is refused."""
    members: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        name = NPZ_MEMBERS.get(info.filename)
        shown = repr(info.filename[:100])
        if name is None:
            raise invalid(
                f"npz: unexpected member {shown}; an npz holds exactly X.npy and y.npy "
                "(np.savez(file, X=X, y=y))",
                details={"member": info.filename[:100]},
            )
        if name in members:
            raise invalid(f"npz: member {shown} appears twice", details={"member": info.filename})
        if info.flag_bits & 0x1:
            raise invalid(f"npz: member {shown} is encrypted", details={"member": info.filename})
        members[name] = info
    absent = [name for name in NPZ_ARRAYS if name not in members]
    if absent:
        raise invalid(
            f"npz: arrays 'X' and 'y' are required; it has {sorted(members) or 'none'}",
            details={"missing": absent},
        )
    return members


def _read_header(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, settings: Settings
) -> _Header:
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        reader = _NPY_HEADERS.get(version)
        if reader is None:
            raise invalid(f"npz: array '{name}' uses .npy format {version}; save with np.savez")
        shape, fortran_order, dtype = reader(member)
        header = _Header(info, shape, fortran_order, dtype, member.tell())
    if dtype.hasobject:
        raise invalid(
            f"npz: array '{name}' holds Python objects ({dtype}); only numeric and string "
            "arrays are accepted (nothing in it was loaded)"
        )
    if dtype.fields is not None or dtype.subdtype is not None:
        raise invalid(f"npz: array '{name}' is a structured array ({dtype}); save plain arrays")
    check_decoded_bytes(header.nbytes, f"array '{name}'", settings)
    size = info.file_size - header.offset  # as the zip's directory says; checked on reading
    if size != header.nbytes:
        what = "is truncated" if size < header.nbytes else "holds more data than its header says"
        raise invalid(
            f"npz: array '{name}' {what}: {size} bytes for shape {shape} of {dtype}, "
            f"which take {header.nbytes}"
        )
    return header


def _read_array(archive: zipfile.ZipFile, header: _Header, name: str) -> np.ndarray:
    """Exactly header.nbytes of data, into an array allocated from the checked header."""
    array = np.empty(math.prod(header.shape), dtype=header.dtype)
    buffer = array.view(np.uint8)  # the same memory, byte by byte
    with archive.open(header.info) as member:
        member.seek(header.offset)
        at = 0
        while at < len(buffer):
            chunk = member.read(min(CHUNK_BYTES, len(buffer) - at))
            if not chunk:
                raise invalid(f"npz: array '{name}' is truncated")
            buffer[at : at + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
            at += len(chunk)
        if member.read(1):
            raise invalid(f"npz: array '{name}' holds more data than its header says")
    order: Literal["C", "F"] = "F" if header.fortran_order else "C"
    return array.reshape(header.shape, order=order)


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
