"""Readiness: can this process reach its database and its broker right now?"""

import logging
import os

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.queue import producer

log = logging.getLogger(__name__)


def readiness(session: Session, settings: Settings) -> dict[str, str]:
    return {"database": _database(session), "broker": _broker(settings)}


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
