"""Which parser reads which upload format: one entry per DatasetFormat."""

from collections.abc import Callable
from typing import BinaryIO

from app.core.config import Settings
from app.datasets.csv_upload import parse_csv, parse_text_csv
from app.datasets.images_zip_upload import parse_images_zip
from app.datasets.npz_upload import parse_npz
from app.datasets.parsing import Parsed, UploadOptions
from app.schemas.dataset import DatasetFormat

Parser = Callable[[BinaryIO, UploadOptions, Settings], Parsed]
PARSERS: dict[DatasetFormat, Parser] = {
    DatasetFormat.csv: parse_csv,
    DatasetFormat.npz: parse_npz,
    DatasetFormat.images_zip: parse_images_zip,
    DatasetFormat.text_csv: parse_text_csv,
}


def parse_upload(
    fmt: DatasetFormat, source: BinaryIO, options: UploadOptions, settings: Settings
) -> Parsed:
    return PARSERS[fmt](source, options, settings)
