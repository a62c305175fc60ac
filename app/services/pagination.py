"""Keyset pagination on (created_at, id), newest first: pages never skip or repeat a row,
however many rows are added while a client walks them."""

import base64
import re
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import Session

from app.core.errors import Unprocessable
from app.schemas.job import ID_PATTERN

ID = re.compile(ID_PATTERN)

Row = TypeVar("Row")


def paginate(
    session: Session,
    query: Select[Row],
    model: Any,
    limit: int,
    cursor: str | None,
    ids: re.Pattern[str] = ID,
) -> tuple[list[Row], str | None]:
    """`model` has created_at and id columns, its ids match `ids`; returns (rows, the cursor
    of the next page)."""
    query = query.order_by(model.created_at.desc(), model.id.desc()).limit(limit + 1)
    if cursor:
        created_at, last_id = _decode(cursor, ids)
        query = query.where(
            (model.created_at < created_at)
            | ((model.created_at == created_at) & (model.id < last_id))
        )
    rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (_encode(rows[-1]) if more else None)


def _encode(row: Any) -> str:
    return base64.urlsafe_b64encode(f"{row.created_at.isoformat()}|{row.id}".encode()).decode()


def _decode(cursor: str, ids: re.Pattern[str]) -> tuple[datetime, str]:
    try:
        raw = base64.b64decode(cursor.encode(), altchars=b"-_", validate=True).decode()
        created_at, last_id = raw.split("|", 1)
        when = datetime.fromisoformat(created_at)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad_cursor() from exc
    if when.tzinfo is None or not ids.match(last_id):
        raise _bad_cursor()
    return when, last_id


def _bad_cursor() -> Unprocessable:
    return Unprocessable("cursor: not a cursor this API returned", code="invalid_cursor")
