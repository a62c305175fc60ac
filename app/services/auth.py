"""API keys: generated here, shown once, stored as SHA-256 hashes."""

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass, replace
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.errors import BadRequest, Forbidden, NotFound, Unauthorized
from app.models import ApiKey
from app.models.base import utcnow
from app.schemas.job import NAME_PATTERN
from app.services.pagination import paginate

KEY_PREFIX = "ts_"
# last_used_at is written at most this often per key, so predict traffic does not write per call.
LAST_USED_RESOLUTION = timedelta(seconds=60)
# An admin key acts in its own project unless a request names another with this header.
PROJECT_HEADER = "X-Trainserve-Project"
# The name of the key's security scheme in the OpenAPI document (components.securitySchemes).
BEARER_SCHEME = "bearerAuth"
_PROJECT = re.compile(NAME_PATTERN)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Principal:
    key_id: str
    # The project this request acts in: where its jobs go and where model names resolve.
    project: str
    scopes: frozenset[str]
    # An admin key that named no project: its lists and id lookups span every project.
    every_project: bool = False

    @property
    def admin(self) -> bool:
        return "admin" in self.scopes

    @property
    def tenant(self) -> str | None:
        """The project whose jobs and datasets this request sees; None: all of them."""
        return None if self.every_project else self.project

    def require(self, scope: str) -> None:
        if not self.admin and scope not in self.scopes:
            raise Forbidden(f"this key lacks the '{scope}' scope", code="insufficient_scope")

    def in_project(self, project: str | None) -> "Principal":
        """The principal for a request that names `project` (the X-Trainserve-Project header).
        An admin key may name any project; any other key only its own."""
        if project is None:
            return self
        if not _PROJECT.match(project):
            raise BadRequest(f"{PROJECT_HEADER} must match {NAME_PATTERN}", code="invalid_project")
        if self.admin:
            return replace(self, project=project, every_project=False)
        if project != self.project:
            raise Forbidden(
                f"this key belongs to project '{self.project}'; only an admin key may name "
                "another project",
                code="wrong_project",
            )
        return self


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    # Keys are 256 random bits, so a plain digest is enough: there is nothing to brute-force.
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(
    session: Session, name: str | None, scopes: list[str], project: str = "default"
) -> tuple[ApiKey, str]:
    """A new key and its secret; a key given no name is named after its project and scopes."""
    plaintext = generate_key()
    row = ApiKey(
        name=name or f"{project} {'+'.join(scopes)}",
        key_hash=hash_key(plaintext),
        prefix=plaintext[:10],
        scopes=scopes,
        project=project,
    )
    session.add(row)
    session.flush()
    return row, plaintext


def ensure_key(
    session: Session, plaintext: str, name: str = "admin (TRAINSERVE_API_KEY)"
) -> ApiKey:
    """Make sure an admin key with this value exists (TRAINSERVE_API_KEY bootstrap). A key
    that was revoked stays revoked: the setting is read on every start, and reviving it would
    undo the revocation of a leaked key at the next restart."""
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(plaintext)))
    if row is None:
        row = ApiKey(
            name=name, key_hash=hash_key(plaintext), prefix=plaintext[:10], scopes=["admin"]
        )
        session.add(row)
        session.flush()
    elif row.revoked_at is not None:
        log.warning(_revoked_bootstrap_warning(row, has_active_key(session)))
    return row


def _revoked_bootstrap_warning(row: ApiKey, others_active: bool) -> str:
    revoked = (
        f"TRAINSERVE_API_KEY ({row.prefix}…, key id {row.id}) was revoked at "
        f"{row.revoked_at:%Y-%m-%d %H:%M:%S} UTC and stays revoked: requests with it get 401."
    )
    if others_active:
        return f"{revoked} Remove TRAINSERVE_API_KEY, or set it to a new key, and restart."
    return (
        f"{revoked} No active key is left, so every request gets 401: set TRAINSERVE_API_KEY "
        "to a new key and restart, or create one in the database with "
        "`trainserve keys create --database --name admin`."
    )


def has_active_key(session: Session) -> bool:
    return session.scalar(select(ApiKey.id).where(ApiKey.revoked_at.is_(None)).limit(1)) is not None


def bearer_key_hash(authorization: str | None) -> str:
    """The hash of the key in an Authorization header; 401 when there is none."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send 'Authorization: Bearer <key>'", code="missing_key")
    return hash_key(token.strip())


def authenticate(session: Session, authorization: str | None) -> Principal:
    return principal_for(session, bearer_key_hash(authorization))


def principal_for(session: Session, key_hash: str) -> Principal:
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))
    if row is None or row.revoked_at is not None:
        raise Unauthorized("the API key is not valid", code="invalid_key")
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        row.last_used_at = now
    scopes = frozenset(row.scopes)
    return Principal(row.id, row.project, scopes, every_project="admin" in scopes)


def list_keys(session: Session, limit: int, cursor: str | None) -> tuple[list[ApiKey], str | None]:
    """One page of every project's keys, newest first, and the cursor of the next page."""
    return paginate(session, select(ApiKey), ApiKey, limit, cursor)


def revoke_key(session: Session, key_id: str) -> ApiKey:
    """Revoked keys stop working on their next request. Predict routes keep a key they have
    checked for up to predict_cache_s (app/serving/lookup.py)."""
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"no key with id '{key_id}'")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row
