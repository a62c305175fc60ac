"""A registered version's artifacts: its checkpoint as stored, or an export of it (ONNX, a
Hugging Face folder) built on first request and kept on this host (DATA_DIR/exports: derived
files, rebuilt where they are missing, never shared through the artifact store).

An export's file is named by the checkpoint's sha256 and EXPORTER_VERSION, so it is only
ever served for the weights and the exporter it was built with. It is written to a temp file
and renamed, so a killed build never leaves a half file that a later request serves. In one
process, concurrent first requests build it once (a lock per path); two processes may each
build it, and the last rename wins, with an equivalent file.
"""

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.base_models.location import folder_finder
from app.core.config import Settings
from app.core.errors import ModelUnavailable, Unavailable, Unprocessable
from app.core.kinds import Arch, Head
from app.ml import export
from app.ml.bundle import ModelBundle, load_bundle
from app.ml.checkpoint import CheckpointError
from app.schemas.model import ArtifactFormat
from app.services import registry
from app.services.artifacts import fetch_artifact
from app.storage import store_for

EXPORTER_VERSION = 1  # raise it when what an export holds changes: older files go unserved
FOLDER = "exports"  # under DATA_DIR
SHA256 = re.compile(r"^[0-9a-f]{64}$")
VERSION_ID = re.compile(r"^[0-9a-f-]{1,64}$")
# format → (the file's suffix here, the download's suffix, its media type)
FILES = {
    ArtifactFormat.safetensors: ("", ".safetensors", "application/octet-stream"),
    ArtifactFormat.onnx: (".onnx", ".onnx", "application/octet-stream"),
    ArtifactFormat.hf: (".hf.tar.gz", "-hf.tar.gz", "application/gzip"),
}


@dataclass(frozen=True)
class Source:
    """What a version's artifacts are made from, read from its row: the build that follows
    holds no database session."""

    version_id: str  # the registry row's: an export names its model and version inside
    model_name: str
    version: int
    arch: str
    head: str | None
    key: str  # the checkpoint's, in the artifact store
    sha256: str


@dataclass(frozen=True)
class Artifact:
    path: Path
    filename: str  # what the download is called
    media_type: str
    etag: str


def find(session: Session, settings: Settings, project: str, name: str, version: int) -> Source:
    """The version of the project's model (another project's is a 404, as everywhere)."""
    row = registry.get_version(session, project, name, version)
    model: dict[str, Any] = row.spec.get("model", {})
    return Source(
        version_id=row.id,
        model_name=row.model_name,
        version=row.version,
        arch=str(model.get("arch", "")),
        head=model.get("head"),
        key=row.checkpoint_path,
        sha256=row.checkpoint_sha256,
    )


def formats(source: Source) -> list[ArtifactFormat]:
    """What a version can be had as: its checkpoint always; ONNX unless it generates text (a
    loop of forward passes, not one graph); a Hugging Face folder for a fine-tuned base."""
    fits = [ArtifactFormat.safetensors]
    if source.head != Head.causal_lm:
        fits.append(ArtifactFormat.onnx)
    if source.arch == Arch.pretrained:
        fits.append(ArtifactFormat.hf)
    return fits


def artifact(settings: Settings, source: Source, fmt: ArtifactFormat) -> Artifact:
    """The file to send, checked against the registry first, an export built if it is not
    there yet (seconds: call this off the event loop)."""
    _check_fits(source, fmt)
    checkpoint = fetch_checkpoint(settings, source)
    _, suffix, media_type = FILES[fmt]
    filename = f"{source.model_name}-v{source.version}{suffix}"
    if fmt == ArtifactFormat.safetensors:
        return Artifact(checkpoint, filename, media_type, f'"{source.sha256}"')
    path = export_path(settings, source, fmt)
    if not path.is_file():
        _build_once(settings, source, fmt, path, checkpoint)
    # Weak: the same checkpoint and exporter make an equivalent file, not always these bytes.
    etag = f'W/"{source.sha256}.{fmt}.{EXPORTER_VERSION}"'
    return Artifact(path, filename, media_type, etag)


def _check_fits(source: Source, fmt: ArtifactFormat) -> None:
    fits = formats(source)
    if fmt not in fits:
        raise Unprocessable(
            f"format: {fmt} is not available for this {source.arch} version; it has "
            f"{', '.join(fits)}",
            details={"field": "format", "formats": [str(f) for f in fits]},
        )


def fetch_checkpoint(settings: Settings, source: Source) -> Path:
    """The checkpoint the registry recorded, checked against its sha256 (409 when it is
    missing or altered: it is neither sent nor exported; 503 when the store is down)."""
    return fetch_artifact(store_for(settings), source.key, source.sha256, _unusable)


def _unusable(reason: str) -> ModelUnavailable:
    return ModelUnavailable(f"this model version's checkpoint cannot be used: {reason}")


def export_path(settings: Settings, source: Source, fmt: ArtifactFormat) -> Path:
    # Both name a file: never anything but what the server makes (a uuid, hex).
    if not SHA256.match(source.sha256) or not VERSION_ID.match(source.version_id):
        raise ModelUnavailable("this model version's recorded id or sha256 is malformed")
    # Per version, not per sha256 alone: two versions of the same weights (a re-run, a copy)
    # get exports of their own, each carrying its model's name and version.
    name = f"{source.sha256}.v{EXPORTER_VERSION}{FILES[fmt][0]}"
    return settings.data_dir / FOLDER / source.version_id / name


_locks: dict[Path, threading.Lock] = {}  # one per export path, kept: a few per version
_locks_lock = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    with _locks_lock:
        return _locks.setdefault(path, threading.Lock())


def _build_once(
    settings: Settings, source: Source, fmt: ArtifactFormat, path: Path, checkpoint: Path
) -> None:
    with _lock_for(path):
        if path.is_file():  # built by the request this one waited for
            return
        bundle = _load(settings, checkpoint)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            _write(settings, source, fmt, bundle, tmp)
            _publish(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def _load(settings: Settings, checkpoint: Path) -> ModelBundle:
    """On the CPU, whatever predict runs on: an export is traced once, and fits anywhere."""
    try:
        return load_bundle(checkpoint, "cpu", folder_finder(settings))
    except (CheckpointError, Unavailable) as exc:
        raise ModelUnavailable(f"this model version cannot be loaded: {exc}") from exc


def _write(
    settings: Settings, source: Source, fmt: ArtifactFormat, bundle: ModelBundle, tmp: Path
) -> None:
    about = export.About(source.model_name, source.version, source.sha256)
    try:
        if fmt == ArtifactFormat.onnx:
            export.write_onnx(bundle, about, tmp)
        else:
            export.write_hf(bundle, folder_finder(settings)(bundle.options["base"]), about, tmp)
    except export.ExportRefused as exc:
        raise Unprocessable(f"format: {exc}", details={"field": "format"}) from exc
    except export.ExporterMissing as exc:
        raise Unavailable(str(exc), code="export_unavailable") from exc


def _publish(tmp: Path, path: Path) -> None:
    """fsync, then rename: a crash may lose the new file (the next request builds it again),
    never leave one whose name is there and whose bytes are not. No folder fsync for that."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
