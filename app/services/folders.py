"""Folders that belong to rows: a created row's folder goes if its transaction rolls back, a
deleted row's once its transaction commits. The row and its files end up agreeing whichever
way the transaction ends, and nothing is removed that a committed row still names.

Kept in session.info like app.services.queue's pending tasks."""

import logging
import shutil
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

_CREATED = "trainserve_folders_created"
_DELETED = "trainserve_folders_deleted"


def created(session: Session, folder: Path) -> None:
    """folder belongs to a row added in this transaction: removed if it rolls back."""
    session.info.setdefault(_CREATED, []).append(folder)


def deleted(session: Session, folder: Path) -> None:
    """folder belongs to a row deleted in this transaction: removed once it commits."""
    session.info.setdefault(_DELETED, []).append(folder)


def remove_folder(folder: Path) -> None:
    try:
        shutil.rmtree(folder)
    except FileNotFoundError:
        return
    except OSError:
        log.exception("could not remove folder %s", folder)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    session.info.pop(_CREATED, None)
    for folder in session.info.pop(_DELETED, []):
        remove_folder(folder)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_DELETED, None)
    for folder in session.info.pop(_CREATED, []):
        remove_folder(folder)
