"""The artifact store: where datasets, checkpoints and model bundles live, as a folder on
this host or as objects in S3 (or MinIO, Ceph, R2), behind one interface. A put publishes
whole objects only; a fetch hands back a local file whose sha256 it has checked.

Every artifact's key is its path under DATA_DIR/artifacts, so the embedded default's layout is
the store's: datasets/<id>/data.npz, jobs/<id>/attempt-N/{epoch-NNNN,best,model}.safetensors.
The database row that names a key records its sha256 (written after the object: a key no row
names is never read)."""

from app.storage.base import ArtifactStore, Stored
from app.storage.cache import ReadCache
from app.storage.errors import (
    ArtifactNotFound,
    CorruptArtifact,
    InvalidKey,
    StoreError,
    StoreUnavailable,
)
from app.storage.keys import validate_key
from app.storage.local import LocalStore
from app.storage.s3 import S3Store
from app.storage.url import store_for, store_from_url

__all__ = [
    "ArtifactNotFound",
    "ArtifactStore",
    "CorruptArtifact",
    "InvalidKey",
    "LocalStore",
    "ReadCache",
    "S3Store",
    "StoreError",
    "StoreUnavailable",
    "Stored",
    "store_for",
    "store_from_url",
    "validate_key",
]
