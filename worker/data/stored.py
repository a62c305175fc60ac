"""Uploaded datasets, loaded the way builtins are: into RawData, from the data.npz the API wrote."""

import zipfile
from pathlib import Path

import numpy as np

from app.core.config import Settings
from app.core.db import session_scope
from app.ml.checkpoint import sha256_file
from app.models import Dataset
from app.schemas.dataset import DataKind
from worker.data.raw import RawData


class StoredDatasetError(ValueError):
    """The dataset's row or file is gone or damaged: the job fails with this message."""


def load_stored(settings: Settings, dataset_id: str) -> RawData:
    with session_scope() as session:
        row = session.get(Dataset, dataset_id)
        if row is None:
            raise StoredDatasetError(f"dataset '{dataset_id}' does not exist (deleted?)")
        kind, schema, rel, sha256 = DataKind(row.kind), row.schema, row.file_path, row.sha256
    path = _inside(settings.artifacts_dir, rel)
    arrays = _read(path, sha256)
    y = arrays["y"]
    classes = schema.get("classes")
    if kind == DataKind.text:
        return RawData(kind, y, classes, texts=arrays["texts"].tolist())
    names = schema.get("features") if kind == DataKind.tabular else None
    return RawData(kind, y, classes, x=arrays["x"], feature_names=names)


def _inside(root: Path, rel: str) -> Path:
    # file_path is built from the id, but a path read from the database is checked anyway.
    path = (root / rel).resolve()
    if not path.is_relative_to(root.resolve()):
        raise StoredDatasetError(f"dataset file path '{rel}' leaves the artifacts folder")
    return path


def _read(path: Path, sha256: str) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise StoredDatasetError(f"dataset file {path} is missing")
    if sha256_file(path) != sha256:
        raise StoredDatasetError(f"dataset file {path} does not match its recorded sha256")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise StoredDatasetError(f"dataset file {path} cannot be read: {exc}") from exc
