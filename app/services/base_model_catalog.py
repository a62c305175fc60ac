"""Base models as the API keeps them: upload (receive, unpack, check, register), the folders
the operator provides, read, list, delete, with tenancy; and which base a job spec names.

A base belongs to its project, or to every project (SHARED) when the operator provided it.
Its files are checked before the row exists (app/base_models/folder.py): nothing is fetched,
unpickled or executed, and only safetensors weights are kept."""

import json
import logging
import re
import uuid
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.base_models.archive import extract_archive
from app.base_models.folder import FolderInfo, inspect_folder
from app.base_models.location import IMPORT, MODEL_SUBFOLDER, OPERATOR_DIR, UPLOAD, base_folder
from app.core.config import Settings
from app.core.db import insert_or_ignore
from app.core.errors import Conflict, Forbidden, NotFound, Unprocessable
from app.core.kinds import Family
from app.ml.images import BaseImageStats, input_size
from app.ml.pretrained import PROCESSOR_FILES
from app.models import SHARED, BaseModelRow, Job, JobStatus, VersionBase
from app.models.base import new_id, utcnow
from app.schemas.job import NAME_PATTERN
from app.services import folders
from app.services.auth import Principal
from app.services.pagination import paginate
from app.services.uploads import receive

log = logging.getLogger(__name__)

ARCHIVE_FILE = "archive.tmp"
# What a spec is checked against (app/services/pretrained_checks.py), copied from config.json;
# for a vision base also the size its image processor makes (IMAGE_INPUT_SIZE).
CONFIG_FIELDS = (
    "max_position_embeddings",
    "n_positions",
    "hidden_size",
    "n_embd",
    "vocab_size",
    "num_hidden_layers",
    "n_layer",
    "num_attention_heads",
    "n_head",
    "image_size",
    "num_channels",
    "patch_size",
    "hidden_sizes",
    "depths",
    "embedding_size",
    "architectures",
)
IMAGE_INPUT_SIZE = "image_input_size"


# --- upload and import ----------------------------------------------------------------------


def create_base_model(
    session: Session, settings: Settings, principal: Principal, name: str, upload: BinaryIO
) -> BaseModelRow:
    """Receive an archive, unpack it, check the folder and register it in the caller's
    project. The row is added only once the folder passed; on any error, or a rollback after
    this call, the folder is removed."""
    _refuse_taken(session, principal.project, name)
    row_id = new_id()
    folder = settings.uploaded_base_models_dir / row_id
    folder.mkdir(parents=True)
    folders.created(session, folder)
    try:
        archive = folder / ARCHIVE_FILE
        limit = settings.max_base_model_upload_bytes
        receive(upload, archive, limit, "max_base_model_upload_bytes", "invalid_archive")
        (folder / MODEL_SUBFOLDER).mkdir()
        extract_archive(archive, folder / MODEL_SUBFOLDER, settings)
        archive.unlink()
        info = inspect_folder(folder / MODEL_SUBFOLDER, settings)
        return _add(
            session,
            principal.project,
            name,
            UPLOAD,
            f"{row_id}/{MODEL_SUBFOLDER}",
            info,
            folder / MODEL_SUBFOLDER,
            principal.key_id,
            row_id,
        )
    except BaseException:
        folders.remove_folder(folder)
        raise


def import_base_model(
    session: Session, settings: Settings, source: Path, name: str, project: str = SHARED
) -> BaseModelRow:
    """`trainserve base-models import PATH`: copy a folder or an archive into the data dir as a
    base shared by every project (or one project's), read-only through the API."""
    _refuse_taken(session, project, name)
    row_id = new_id()
    folder = settings.uploaded_base_models_dir / row_id
    (folder / MODEL_SUBFOLDER).mkdir(parents=True)
    folders.created(session, folder)
    try:
        if source.is_dir():
            inspect_folder(source, settings)  # refuse before copying gigabytes
            _copy_tree(source, folder / MODEL_SUBFOLDER)
        else:
            extract_archive(source, folder / MODEL_SUBFOLDER, settings)
        info = inspect_folder(folder / MODEL_SUBFOLDER, settings)
        return _add(
            session,
            project,
            name,
            IMPORT,
            f"{row_id}/{MODEL_SUBFOLDER}",
            info,
            folder / MODEL_SUBFOLDER,
            None,
            row_id,
        )
    except BaseException:
        folders.remove_folder(folder)
        raise


def sync_operator_dir(session: Session, settings: Settings) -> list[str]:
    """Register each subfolder of TRAINSERVE_BASE_MODELS_DIR as a shared, read-only base named
    after it; a folder whose files changed is checked again. Returns the names refused, each
    logged with its reason (one bad folder does not hide the others)."""
    root = settings.base_models_dir
    if root is None or not root.is_dir():
        return []
    refused = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()):
        try:
            _sync_one(session, settings, sub)
        except (Unprocessable, Conflict, OSError) as exc:
            log.warning("base model folder %s refused: %s", sub, exc)
            refused.append(sub.name)
    return refused


def _sync_one(session: Session, settings: Settings, sub: Path) -> None:
    if not _valid_name(sub.name):
        raise Unprocessable(f"'{sub.name}' is not a usable name (letters, digits, . _ -)")
    row = session.scalar(
        select(BaseModelRow).where(BaseModelRow.project == SHARED, BaseModelRow.name == sub.name)
    )
    if row is not None and row.source == OPERATOR_DIR and _same_files(row, sub):
        return
    info = inspect_folder(sub, settings)
    if row is None:
        # A stable id from the name: every API process that syncs the same folder agrees.
        row_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"trainserve-base-model:{sub.name}"))
        _add(session, SHARED, sub.name, OPERATOR_DIR, sub.name, info, sub, None, row_id)
        return
    if row.source != OPERATOR_DIR:
        raise Conflict(f"a shared base named '{sub.name}' was imported already")
    for column, value in _described(info, sub).items():
        setattr(row, column, value)
    session.flush()


def _same_files(row: BaseModelRow, folder: Path) -> bool:
    """Cheap: the same paths and sizes (hashing gigabytes on every start-up would not be)."""
    found = {
        p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*") if p.is_file()
    }
    return found == {f["path"]: f["bytes"] for f in row.files}


def _add(
    session: Session,
    project: str,
    name: str,
    source: str,
    folder_column: str,
    info: FolderInfo,
    folder: Path,
    created_by: str | None,
    row_id: str,
) -> BaseModelRow:
    """One INSERT that does nothing when (project, name) is taken: of two requests racing for
    a name, exactly one registers it and the other gets a 409 (and its folder removed)."""
    values = {
        "id": row_id,
        "project": project,
        "name": name,
        "source": source,
        "folder": folder_column,
        "created_by": created_by,
        "created_at": utcnow(),
        **_described(info, folder),
    }
    if not insert_or_ignore(session, BaseModelRow, values, ["project", "name"]):
        raise _taken(name)
    row = session.get(BaseModelRow, row_id)
    assert row is not None  # inserted just now
    return row


def _described(info: FolderInfo, folder: Path) -> dict[str, Any]:
    """The columns that describe a checked folder."""
    return {
        "family": info.family,
        "model_type": info.model_type,
        "parameters": info.parameters,
        "sha256": info.sha256,
        "files": info.files,
        "size_bytes": sum(int(f["bytes"]) for f in info.files),
        "config": _config_summary(folder, info.family),
    }


def _config_summary(folder: Path, family: str) -> dict[str, Any]:
    config = json.loads((folder / "config.json").read_text())  # bounded by inspect_folder
    summary = {key: config[key] for key in CONFIG_FIELDS if key in config}
    if family == Family.vision:
        summary[IMAGE_INPUT_SIZE] = list(_image_input_size(folder, config))
    return summary


def _image_input_size(folder: Path, config: dict[str, Any]) -> tuple[int, int]:
    """From the processor config's JSON as written (bounded by inspect_folder too): the
    footprint estimate's input size. Training reads the processor itself."""
    for name in PROCESSOR_FILES:
        if (folder / name).is_file():
            return input_size(json.loads((folder / name).read_text()), config)
    return BaseImageStats.from_processor(None, config).size


def _copy_tree(source: Path, dest: Path) -> None:
    for path in sorted(source.rglob("*")):
        target = dest / path.relative_to(source)
        if path.is_dir():
            target.mkdir(exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "rb") as src, open(target, "xb") as out:
                while block := src.read(1 << 20):
                    out.write(block)


def _refuse_taken(session: Session, project: str, name: str) -> None:
    """Checked before receiving gigabytes; the unique (project, name) decides a race."""
    taken = session.scalar(
        select(BaseModelRow.id).where(BaseModelRow.project == project, BaseModelRow.name == name)
    )
    if taken is not None:
        raise _taken(name)


def _taken(name: str) -> Conflict:
    return Conflict(
        f"a base model named '{name}' exists in this project; delete it or choose another name",
        code="base_model_exists",
    )


def _valid_name(name: str) -> bool:
    return re.fullmatch(NAME_PATTERN, name) is not None


# --- read, list, delete ---------------------------------------------------------------------


def _visible(row: BaseModelRow | None, tenant: str | None) -> bool:
    return row is not None and (tenant is None or row.project in (tenant, SHARED))


def get_base_model(session: Session, base_id: str, tenant: str | None = None) -> BaseModelRow:
    """Another project's base is a 404, exactly like one that does not exist."""
    row = session.get(BaseModelRow, base_id)
    if row is None or not _visible(row, tenant):
        raise NotFound(f"no base model with id '{base_id}'")
    return row


def list_base_models(
    session: Session, limit: int, cursor: str | None, tenant: str | None = None
) -> tuple[list[BaseModelRow], str | None]:
    query = select(BaseModelRow)
    if tenant is not None:
        query = query.where(BaseModelRow.project.in_([tenant, SHARED]))
    return paginate(session, query, BaseModelRow, limit, cursor)


def delete_base_model(
    session: Session, settings: Settings, base_id: str, tenant: str | None = None
) -> None:
    """Refused while a job or a registered version needs it; the files go once it commits.
    The versions' foreign key decides a race with a job that registers just now."""
    row = get_base_model(session, base_id, tenant)
    if row.read_only:
        raise Forbidden(
            f"base model '{row.name}' is provided by the operator and cannot be deleted here",
            code="base_model_read_only",
        )
    _refuse_in_use(session, row)
    folder = base_folder(settings, row.source, row.folder).parent
    try:
        session.delete(row)
        session.flush()
    except IntegrityError as exc:  # the request's transaction rolls back: nothing is lost
        raise _in_use(row.name, {"versions": ["registered meanwhile"], "jobs": []}) from exc
    folders.deleted(session, folder)


def _refuse_in_use(session: Session, row: BaseModelRow) -> None:
    versions = session.scalars(
        select(VersionBase.version_id).where(VersionBase.base_model_id == row.id).limit(20)
    ).all()
    jobs = list(
        session.scalars(
            select(Job.id)
            .where(
                Job.status.in_([JobStatus.queued, JobStatus.running]),
                Job.spec["model"]["base"].as_string() == row.id,
            )
            .limit(20)
        )
    )
    if versions or jobs:
        raise _in_use(row.name, {"versions": list(versions), "jobs": jobs})


def _in_use(name: str, details: dict[str, Any]) -> Conflict:
    return Conflict(
        f"base model '{name}' is used by registered versions or queued/running jobs; delete "
        "those versions and let the jobs finish first",
        details=details,
        code="base_model_in_use",
    )


# --- what a spec's base is ------------------------------------------------------------------


def resolve_base(session: Session, ref: str, project: str) -> BaseModelRow | None:
    """A spec's `model.base`: an id, else a name in the project, else a shared name."""
    row = session.get(BaseModelRow, ref)
    if row is not None and _visible(row, project):
        return row
    rows = session.scalars(
        select(BaseModelRow).where(
            BaseModelRow.name == ref,
            or_(BaseModelRow.project == project, BaseModelRow.project == SHARED),
        )
    ).all()
    return min(rows, key=lambda r: r.project == SHARED, default=None)  # the project's own first
