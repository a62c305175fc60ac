"""The stored format, its one owner: an upload is kept in the artifact store under
datasets/<id>/data.npz (x or texts, and y; never a pickle), its sha256 on its database row.
The upload service writes it with write_stored and puts it; the worker loads it back into
RawData with load_stored (from any host: the store checks the bytes), as it loads builtins."""

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from app.core.config import Settings
from app.core.db import session_scope
from app.core.kinds import Task
from app.datasets.raw import RawData
from app.models import Dataset
from app.schemas.dataset import DataKind
from app.storage import (
    ArtifactNotFound,
    ArtifactStore,
    CorruptArtifact,
    StoreError,
    StoreUnavailable,
    store_for,
)

DATASETS_DIR = "datasets"
DATA_FILE = "data.npz"


class StoredDatasetError(ValueError):
    """The dataset's row or file is gone or damaged: the job fails with this message."""


def relative_path(dataset_id: str) -> str:
    """The dataset's key in the artifact store, built from the server's id only: a user's
    name never reaches a path or a key."""
    return f"{DATASETS_DIR}/{dataset_id}/{DATA_FILE}"


def folder_key(dataset_id: str) -> str:
    return f"{DATASETS_DIR}/{dataset_id}"


# --- write ----------------------------------------------------------------------------------


def write_stored(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write the arrays at path, a staged file (ArtifactStore.staged), fsynced: the store's
    put publishes it atomically under the dataset's key."""
    named: dict[str, Any] = dict(arrays)
    with open(path, "xb") as fp:
        # allow_pickle=False: an object array is refused here, so data.npz never holds a pickle.
        np.savez(fp, allow_pickle=False, **named)
        fp.flush()
        os.fsync(fp.fileno())


# --- read -----------------------------------------------------------------------------------


def load_stored(settings: Settings, dataset_id: str) -> RawData:
    with session_scope() as session:
        row = session.get(Dataset, dataset_id)
        if row is None:
            raise StoredDatasetError(f"dataset '{dataset_id}' does not exist (deleted?)")
        kind, schema, key, sha256 = DataKind(row.kind), row.schema, row.file_path, row.sha256
        task = Task(row.task)
    arrays = _read(store_for(settings), key, sha256)
    y = arrays["y"]
    classes = schema.get("classes")
    if kind == DataKind.text:
        return RawData(kind, y, classes, texts=arrays["texts"].tolist(), task=task)
    names = schema.get("features") if kind == DataKind.tabular else None
    return RawData(kind, y, classes, x=arrays["x"], feature_names=names, task=task)


def _read(store: ArtifactStore, key: str, sha256: str) -> dict[str, np.ndarray]:
    try:
        path = store.fetch(key, sha256)
    except ArtifactNotFound as exc:
        raise StoredDatasetError(f"dataset file {key} is missing: {exc}") from exc
    except CorruptArtifact as exc:
        raise StoredDatasetError(
            f"dataset file {key} does not match its recorded sha256: {exc}"
        ) from exc
    except StoreUnavailable:
        raise  # not the dataset's fault: the job is tried again later (worker/training/runner)
    except StoreError as exc:  # an invalid key read from the database
        raise StoredDatasetError(f"dataset file {key} cannot be read: {exc}") from exc
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise StoredDatasetError(f"dataset file {key} cannot be read: {exc}") from exc
