"""images-zip uploads: one folder per class of PNG/JPEG files, decoded in memory (never
extracted to disk) through app.ml.images.decode_image, the decoder predict uses too."""

import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO

import numpy as np
from PIL import Image

from app.core.config import Settings
from app.core.errors import Unprocessable
from app.datasets.parsing import (
    Parsed,
    UploadOptions,
    check_decoded_bytes,
    check_rows,
    encode_classes,
    invalid,
    over_limit,
)
from app.ml.images import FORMATS, ImageDecodeError, check_pixels, decode_image
from app.schemas.dataset import DataKind
from app.schemas.job import Task

MIN_IMAGE_SIZE = 4
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_DRIVE = re.compile(r"^[A-Za-z]:")
# Errors that reading a damaged or unsupported member raises.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError)
# Pillow raises many kinds of error on a file it cannot read; each means "not an image".
_PIL_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


@dataclass(frozen=True)
class Member:
    info: zipfile.ZipInfo
    label: str  # the class folder it sits in


def parse_images_zip(source: BinaryIO, options: UploadOptions, settings: Settings) -> Parsed:
    size = _image_size(options, settings)
    if options.channels not in (None, 1, 3):
        raise invalid("channels: 1 (grayscale) or 3 (RGB)")
    if options.task == Task.regression:
        raise invalid("task: images-zip datasets are for classification (a folder per class)")
    archive = _open(source)
    with archive:
        members = list_members(archive, settings)
        check_rows(len(members), settings)
        channels = options.channels or _channels(archive, members)
        check_decoded_bytes(len(members) * channels * size * size, "the images", settings)
        pixels = np.empty((len(members), channels, size, size), dtype=np.uint8)
        for row, member in enumerate(members):
            pixels[row] = _decode(archive, member, [channels, size, size], settings)
    y, target_schema = encode_classes(np.array([m.label for m in members]), "folders", settings)
    schema = {
        "kind": DataKind.image.value,
        "task": Task.classification.value,
        "rows": len(members),
        "image_shape": [channels, size, size],
        **target_schema,
        "resize": {"size": [size, size], "resample": "bilinear", "mode": _mode(channels)},
    }
    return Parsed(DataKind.image, Task.classification, {"x": pixels, "y": y}, schema)


def _image_size(options: UploadOptions, settings: Settings) -> int:
    if not MIN_IMAGE_SIZE <= options.image_size <= settings.max_image_size:
        raise invalid(f"image_size: between {MIN_IMAGE_SIZE} and {settings.max_image_size}")
    return options.image_size


def _open(source: BinaryIO) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(source)
    except zipfile.BadZipFile as exc:
        raise invalid(f"not a zip archive: {exc}") from exc


def _mode(channels: int) -> str:
    return "L" if channels == 1 else "RGB"


def list_members(archive: zipfile.ZipFile, settings: Settings) -> list[Member]:
    """The images and their classes, sorted; every limit and path checked from the central
    directory before a byte is decompressed."""
    infos = archive.infolist()
    count = len(infos)
    if count > settings.max_zip_files:
        raise over_limit(f"the zip has {count} entries", "max_zip_files", settings.max_zip_files)
    total = sum(info.file_size for info in infos)
    limit = settings.max_zip_uncompressed_bytes
    if total > limit:
        raise over_limit(f"the zip unpacks to {total} bytes", "max_zip_uncompressed_bytes", limit)
    for info in infos:
        check_path(info.filename)
    files = [info for info in infos if not info.is_dir() and not _skipped(info.filename)]
    if not files:
        raise invalid("the zip holds no images (one folder per class: cats/1.png, dogs/2.jpg)")
    members = _classify(files)
    labels = sorted({m.label for m in members})
    if len(labels) < 2:
        raise invalid(
            f"the zip has one class folder ({labels[0]!r}); classification needs at least 2"
        )
    return sorted(members, key=lambda m: (m.label, m.info.filename))


def check_path(name: str) -> None:
    """Zip-slip: nothing is extracted, but a path that could escape a folder is refused anyway."""
    reason = None
    if "\\" in name:
        reason = "a backslash"
    elif name.startswith("/") or _DRIVE.match(name):
        reason = "an absolute path"
    elif ".." in PurePosixPath(name).parts:
        reason = "a '..' component"
    if reason is not None:
        raise Unprocessable(
            f"unsafe path in the zip: '{name}' has {reason}; entries must be relative paths",
            details={"path": name},
            code="unsafe_path",
        )


def _skipped(name: str) -> bool:
    # What zipping a folder on macOS adds, and hidden files (.DS_Store): not data.
    path = PurePosixPath(name)
    return path.parts[0] == "__MACOSX" or path.name.startswith(".")


def _classify(files: list[zipfile.ZipInfo]) -> list[Member]:
    parts = [PurePosixPath(info.filename).parts for info in files]
    # A zip of the folder that holds the class folders has one extra level: drop it.
    if all(len(p) == 3 for p in parts) and len({p[0] for p in parts}) == 1:
        parts = [p[1:] for p in parts]
    members = []
    for info, path in zip(files, parts, strict=True):
        if len(path) != 2:
            raise invalid(
                f"'{info.filename}': images go in one folder per class (cats/1.png)",
                details={"path": info.filename},
            )
        if info.flag_bits & 0x1:
            raise invalid(f"'{info.filename}': encrypted entries are not accepted")
        members.append(Member(info, path[0]))
    return members


def _channels(archive: zipfile.ZipFile, members: list[Member]) -> int:
    """1 if every image is grayscale, else 3. Opening an image reads its header only."""
    for member in members:
        if _header_mode(archive, member) not in GRAY_MODES:
            return 3
    return 1


def _header_mode(archive: zipfile.ZipFile, member: Member) -> str:
    try:
        with archive.open(member.info) as fp, Image.open(fp, formats=FORMATS) as img:
            check_pixels(img)
            return str(img.mode)
    except _ZIP_ERRORS as exc:
        raise invalid(f"'{member.info.filename}': cannot be read from the zip: {exc}") from exc
    except (ImageDecodeError, *_PIL_ERRORS) as exc:
        raise _not_an_image(member, exc) from exc


def _decode(
    archive: zipfile.ZipFile, member: Member, shape: list[int], settings: Settings
) -> np.ndarray:
    data = read_member(archive, member.info)
    try:
        return decode_image(data, shape, max_bytes=settings.max_zip_uncompressed_bytes)
    except ImageDecodeError as exc:
        raise _not_an_image(member, exc) from exc


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """The member's bytes, never more than its declared (and already limited) size."""
    try:
        with archive.open(info) as fp:
            data = fp.read(info.file_size + 1)
    except _ZIP_ERRORS as exc:
        raise invalid(f"'{info.filename}': cannot be read from the zip: {exc}") from exc
    if len(data) > info.file_size:
        raise invalid(f"'{info.filename}': larger than the zip's directory says")
    return data


def _not_an_image(member: Member, exc: Exception) -> Unprocessable:
    name = member.info.filename
    if isinstance(exc, ImageDecodeError):
        reason = str(exc)
    elif isinstance(exc, Image.DecompressionBombError):
        reason = f"the image has too many pixels: {exc}"
    else:
        reason = "not a PNG or JPEG image"
    return invalid(f"'{name}': {reason}", details={"path": name})
