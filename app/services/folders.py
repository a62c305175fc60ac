"""Files that belong to rows: a created row's files go if its transaction rolls back, a
deleted row's once its transaction commits. The row and its files end up agreeing whichever
way the transaction ends, and nothing is removed that a committed row still names.

Files are a local folder (base models) or a folder of the artifact store (datasets, a job's
checkpoints and bundles). Kept in session.info like app.services.queue's pending tasks."""

import logging
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.orm import Session

from app.storage import ArtifactStore, StoreError

log = logging.getLogger(__name__)

_CREATED = "trainserve_folders_created"
_DELETED = "trainserve_folders_deleted"

Removal = Callable[[], None]


def created(session: Session, folder: Path) -> None:
    """folder belongs to a row added in this transaction: removed if it rolls back."""
    session.info.setdefault(_CREATED, []).append(partial(remove_folder, folder))


def deleted(session: Session, folder: Path) -> None:
    """folder belongs to a row deleted in this transaction: removed once it commits."""
    session.info.setdefault(_DELETED, []).append(partial(remove_folder, folder))


def stored_created(session: Session, store: ArtifactStore, prefix: str) -> None:
    """The store's folder `prefix` belongs to a row added in this transaction."""
    session.info.setdefault(_CREATED, []).append(partial(remove_stored, store, prefix))


def stored_deleted(session: Session, store: ArtifactStore, prefix: str) -> None:
    """The store's folder `prefix` belongs to a row deleted in this transaction."""
    session.info.setdefault(_DELETED, []).append(partial(remove_stored, store, prefix))


def remove_folder(folder: Path) -> None:
    try:
        shutil.rmtree(folder)
    except FileNotFoundError:
        return
    except OSError:
        log.exception("could not remove folder %s", folder)


def remove_stored(store: ArtifactStore, prefix: str) -> None:
    """Best effort, as remove_folder: no row names these objects any more, so one left
    behind (the store down just now) takes space but is never read."""
    try:
        store.delete_prefix(prefix)
    except StoreError:
        log.exception("could not remove %s from the artifact store %r", prefix, store)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    session.info.pop(_CREATED, None)
    _run(session.info.pop(_DELETED, []))


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_DELETED, None)
    _run(session.info.pop(_CREATED, []))


def _run(removals: list[Removal]) -> None:
    for remove in removals:
        remove()
