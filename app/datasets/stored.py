"""The stored format, its one owner: an upload is kept as artifacts/datasets/<id>/data.npz (x or
texts, and y; never a pickle) beside its database row. The upload service writes it with
write_stored; the worker loads it back into RawData with load_stored, as it loads builtins."""

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from app.core.config import Settings
from app.core.db import session_scope
from app.core.files import sha256_file
from app.core.kinds import Task
from app.datasets.raw import RawData
from app.models import Dataset
from app.schemas.dataset import DataKind

DATASETS_DIR = "datasets"
DATA_FILE = "data.npz"


class StoredDatasetError(ValueError):
    """The dataset's row or file is gone or damaged: the job fails with this message."""


def relative_path(dataset_id: str) -> str:
    # Built from the server's id only: a user's name never reaches the filesystem.
    return f"{DATASETS_DIR}/{dataset_id}/{DATA_FILE}"


def dataset_folder(settings: Settings, dataset_id: str) -> Path:
    return settings.artifacts_dir / DATASETS_DIR / dataset_id


# --- write ----------------------------------------------------------------------------------


def write_stored(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Atomically and durably: a reader sees the whole file or none, and once this returns a
    crash loses neither (temp file, fsync, rename, fsync the folder and the one above it,
    which holds the folder's own entry when create_dataset has just made it)."""
    temp = path.with_name(path.name + ".tmp")
    named: dict[str, Any] = dict(arrays)
    with open(temp, "xb") as fp:
        # allow_pickle=False: an object array is refused here, so data.npz never holds a pickle.
        np.savez(fp, allow_pickle=False, **named)
        fp.flush()
        os.fsync(fp.fileno())
    os.replace(temp, path)
    for folder in (path.parent, path.parent.parent):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --- read -----------------------------------------------------------------------------------


def load_stored(settings: Settings, dataset_id: str) -> RawData:
    with session_scope() as session:
        row = session.get(Dataset, dataset_id)
        if row is None:
            raise StoredDatasetError(f"dataset '{dataset_id}' does not exist (deleted?)")
        kind, schema, rel, sha256 = DataKind(row.kind), row.schema, row.file_path, row.sha256
        task = Task(row.task)
    path = _inside(settings.artifacts_dir, rel)
    arrays = _read(path, sha256)
    y = arrays["y"]
    classes = schema.get("classes")
    if kind == DataKind.text:
        return RawData(kind, y, classes, texts=arrays["texts"].tolist(), task=task)
    names = schema.get("features") if kind == DataKind.tabular else None
    return RawData(kind, y, classes, x=arrays["x"], feature_names=names, task=task)


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
