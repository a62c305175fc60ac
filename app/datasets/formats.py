"""Which parser reads which upload format: one entry per DatasetFormat."""

from collections.abc import Callable
from typing import BinaryIO

from app.core.config import Settings
from app.datasets.csv_upload import parse_csv, parse_text_csv
from app.datasets.images_zip_upload import parse_images_zip
from app.datasets.npz_upload import parse_npz
from app.datasets.parsing import Parsed, UploadOptions, invalid
from app.datasets.text_upload import parse_text
from app.schemas.dataset import DatasetFormat
from app.schemas.job import Task

Parser = Callable[[BinaryIO, UploadOptions, Settings], Parsed]
PARSERS: dict[DatasetFormat, Parser] = {
    DatasetFormat.csv: parse_csv,
    DatasetFormat.npz: parse_npz,
    DatasetFormat.images_zip: parse_images_zip,
    DatasetFormat.text_csv: parse_text_csv,
    DatasetFormat.text: parse_text,
}


# The tasks each format can be stored for (the form's `task`; None: follows from the data).
TASKS: dict[DatasetFormat, set[Task]] = {
    DatasetFormat.csv: {Task.classification, Task.regression},
    DatasetFormat.npz: {Task.classification, Task.regression},
    DatasetFormat.images_zip: {Task.classification},
    DatasetFormat.text_csv: {Task.classification, Task.regression},
    DatasetFormat.text: {Task.generation},
}


def parse_upload(
    fmt: DatasetFormat, source: BinaryIO, options: UploadOptions, settings: Settings
) -> Parsed:
    if options.task is not None and options.task not in TASKS[fmt]:
        fits = " or ".join(sorted(TASKS[fmt]))
        raise invalid(f"task: a {fmt} dataset is for {fits}")
    return PARSERS[fmt](source, options, settings)
