"""Datasets as the API keeps them: upload (parse, validate, store), read, list, delete, with
tenancy; and what a job spec's dataset is (kind, task, input shape) for validating the spec.

A service because it owns database rows and their folders within the caller's transaction;
how a file is parsed, stored and named is app.datasets, which the worker shares."""

import logging
from dataclasses import dataclass
from typing import Any, BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.db import insert_or_ignore
from app.core.errors import Conflict, NotFound, invalid_field
from app.datasets.builtin import BUILTINS
from app.datasets.formats import parse_upload
from app.datasets.parsing import Parsed, UploadOptions
from app.datasets.stored import DATA_FILE, folder_key, relative_path, write_stored
from app.models import Dataset, Job, JobStatus
from app.models.base import new_id, utcnow
from app.schemas.dataset import DataKind, DatasetFormat
from app.schemas.job import DatasetRef, Task
from app.services import folders
from app.services.artifacts import put_artifact
from app.services.auth import Principal
from app.services.pagination import paginate
from app.services.uploads import receive
from app.storage import ArtifactStore, Stored, store_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetInfo:
    """What a job spec's dataset is, without loading it."""

    kind: DataKind
    task: Task
    input_shape: list[int]  # tabular [features]; image [C, H, W]; text []
    classes: list[Any] | None  # labels in class-index order; None for regression

    @property
    def n_classes(self) -> int | None:
        return len(self.classes) if self.classes is not None else None


# --- upload ---------------------------------------------------------------------------------


def create_dataset(
    session: Session,
    settings: Settings,
    principal: Principal,
    name: str,
    fmt: DatasetFormat,
    upload: BinaryIO,
    options: UploadOptions,
) -> Dataset:
    """Parse and store an upload. The row is added only once data.npz is in place; on any error
    the dataset's folder is removed, and a rollback after this call removes it too."""
    _refuse_taken(session, principal.project, name)  # before the work of parsing
    dataset_id = new_id()
    store = store_for(settings)
    # Put before the row: a rollback from here on removes the object, and no committed row
    # ever names a key whose object is not whole (the put is atomic).
    folders.stored_created(session, store, folder_key(dataset_id))
    try:
        parsed, upload_info, stored = _store(store, dataset_id, fmt, upload, options, settings)
        values = {
            "id": dataset_id,
            "name": name,
            "project": principal.project,
            "format": fmt.value,
            "kind": parsed.kind.value,
            "task": parsed.task.value,
            "schema": {**parsed.schema, "upload": upload_info},
            "file_path": stored.key,
            "sha256": stored.sha256,
            "size_bytes": stored.size,
            "created_at": utcnow(),
            "created_by": principal.key_id,
        }
        # Two uploads of one name racing past the check above: the index decides, once.
        if not insert_or_ignore(session, Dataset, values, ["project", "name"]):
            raise _taken(session, principal.project, name)
    except BaseException:
        folders.remove_stored(store, folder_key(dataset_id))
        raise
    row = session.get(Dataset, dataset_id)
    assert row is not None  # inserted just now
    return row


def _refuse_taken(session: Session, project: str, name: str) -> None:
    if _named(session, project, name) is not None:
        raise _taken(session, project, name)


def _named(session: Session, project: str, name: str) -> str | None:
    query = select(Dataset.id).where(Dataset.project == project, Dataset.name == name)
    return session.scalar(query)


def _taken(session: Session, project: str, name: str) -> Conflict:
    return Conflict(
        f"a dataset named '{name}' exists in this project; delete it or choose another name",
        details={"field": "name", "id": _named(session, project, name)},
        code="dataset_exists",
    )


def _store(
    store: ArtifactStore,
    dataset_id: str,
    fmt: DatasetFormat,
    upload: BinaryIO,
    options: UploadOptions,
    settings: Settings,
) -> tuple[Parsed, dict[str, Any], Stored]:
    with store.staged("upload") as source, store.staged(DATA_FILE) as data:
        upload_info = receive(
            upload, source, settings.max_upload_bytes, "max_upload_bytes", "invalid_dataset"
        )
        with open(source, "rb") as fp:
            parsed = parse_upload(fmt, fp, options, settings)
        source.unlink()
        write_stored(data, parsed.arrays)
        stored = put_artifact(store, relative_path(dataset_id), data)
    return parsed, upload_info, stored


# --- read, list, delete ---------------------------------------------------------------------


def get_dataset(session: Session, dataset_id: str, tenant: str | None = None) -> Dataset:
    """Another project's dataset is a 404, exactly like one that does not exist."""
    row = session.get(Dataset, dataset_id)
    if row is None or (tenant is not None and row.project != tenant):
        raise NotFound(f"no dataset with id '{dataset_id}'")
    return row


def list_datasets(
    session: Session, limit: int, cursor: str | None, tenant: str | None = None
) -> tuple[list[Dataset], str | None]:
    query = select(Dataset) if tenant is None else select(Dataset).where(Dataset.project == tenant)
    return paginate(session, query, Dataset, limit, cursor)


def delete_dataset(
    session: Session, settings: Settings, dataset_id: str, tenant: str | None = None
) -> None:
    """Refused while a queued or running job needs it; the files go once the delete commits."""
    row = get_dataset(session, dataset_id, tenant)
    jobs = active_jobs_using(session, dataset_id)
    if jobs:
        raise Conflict(
            f"dataset is used by {len(jobs)} queued or running job(s); cancel them or let them "
            "finish first",
            details={"jobs": jobs},
            code="dataset_in_use",
        )
    session.delete(row)
    session.flush()
    folders.stored_deleted(session, store_for(settings), folder_key(dataset_id))


def active_jobs_using(session: Session, dataset_id: str) -> list[str]:
    query = select(Job.id).where(
        Job.status.in_([JobStatus.queued, JobStatus.running]),
        Job.spec["dataset"]["id"].as_string() == dataset_id,
    )
    return list(session.scalars(query.limit(20)))


# --- what a spec's dataset is ---------------------------------------------------------------


def dataset_info(session: Session, ref: DatasetRef, tenant: str | None = None) -> DatasetInfo:
    """Kind, task and input shape of a builtin or an uploaded dataset; 422 naming the field if
    it does not exist (or is another project's). Builtins never touch the session."""
    if ref.id is not None:
        row = session.get(Dataset, ref.id)
        if row is None or (tenant is not None and row.project != tenant):
            raise invalid_field("dataset.id", f"no dataset with id '{ref.id}'")
        return _info_from_schema(row)
    builtin = BUILTINS.get(ref.builtin or "")
    if builtin is None:
        names = ", ".join(sorted(BUILTINS))
        raise invalid_field("dataset.builtin", f"unknown builtin dataset; choose one of {names}")
    classes = list(builtin.classes) if builtin.classes is not None else None
    return DatasetInfo(DataKind.tabular, builtin.task, [builtin.n_features], classes)


def _info_from_schema(row: Dataset) -> DatasetInfo:
    kind = DataKind(row.kind)
    classes = row.schema.get("classes")
    return DatasetInfo(kind, Task(row.task), _input_shape(kind, row.schema), classes or None)


def _input_shape(kind: DataKind, schema: dict[str, Any]) -> list[int]:
    if kind == DataKind.tabular:
        return [len(schema["features"])]
    if kind == DataKind.image:
        return [int(n) for n in schema["image_shape"]]
    return []  # text: strings, tokenized by the model
