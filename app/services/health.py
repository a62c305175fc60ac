"""Readiness: can this process reach its database, its broker and its artifact store right now?"""

import logging
import os
import shutil

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.services.queue import producer
from app.storage import StoreError, store_for

log = logging.getLogger(__name__)


def readiness(session: Session, settings: Settings) -> dict[str, str]:
    return {
        "database": _database(session),
        "broker": _broker(settings),
        "storage": _storage(settings),
        "artifact_store": _artifact_store(settings),
    }


def _artifact_store(settings: Settings) -> str:
    """Reachable and writable now (one quick try): without it no dataset is stored, no job
    checkpoints, and a version not loaded yet cannot be served."""
    try:
        store_for(settings).probe()
    except (StoreError, ValueError) as exc:  # ValueError: a setting that names no store
        log.warning("artifact store not ready: %s", exc)
        return "unreachable"
    return "ok"


def _storage(settings: Settings) -> str:
    """'low' below min_free_bytes under the data dir (datasets, checkpoints, models, and the
    embedded database live there): uploads and training would fail on a full disk."""
    try:
        free = shutil.disk_usage(settings.data_dir).free
    except OSError as exc:
        log.warning("cannot read the free space of %s: %s", settings.data_dir, exc)
        return "unreachable"
    if free < settings.min_free_bytes:
        log.warning("only %d bytes free under %s", free, settings.data_dir)
        return "low"
    return "ok"


def _database(session: Session) -> str:
    try:
        session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        log.warning("database not reachable: %s", exc)
        return "unreachable"
    return "ok"


def _broker(settings: Settings) -> str:
    if settings.embedded_broker:
        return "ok" if os.access(settings.broker_dir, os.W_OK) else "unreachable"
    try:
        with producer().connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except (
        Exception
    ) as exc:  # kombu raises transport-specific errors; any of them means "not ready"
        log.warning("broker not reachable: %s", exc)
        return "unreachable"
    return "ok"
