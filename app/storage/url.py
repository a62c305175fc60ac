"""TRAINSERVE_ARTIFACT_STORE, read: which store this process uses."""

import re
from pathlib import Path

from app.storage.base import ArtifactStore
from app.storage.cache import ReadCache
from app.storage.local import LocalStore
from app.storage.s3 import S3Store, s3_client

SETTING = "TRAINSERVE_ARTIFACT_STORE"
DEFAULT_CACHE_BYTES = 10 * 1024**3
# S3's rules for a bucket name: 3-63 lowercase letters, digits, dots and hyphens.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def store_from_url(
    value: str, data_dir: Path, cache_bytes: int = DEFAULT_CACHE_BYTES
) -> ArtifactStore:
    """ "" → DATA_DIR/artifacts; an absolute folder; s3://bucket[/prefix], whose reads are
    cached in DATA_DIR/artifact-cache up to cache_bytes."""
    if value == "":
        return LocalStore(Path(data_dir) / "artifacts")
    if value.startswith("s3://"):
        bucket, _, prefix = value.removeprefix("s3://").partition("/")
        if not _BUCKET.fullmatch(bucket):
            raise ValueError(f"{SETTING}={value!r}: {bucket!r} is not an S3 bucket name")
        cache = ReadCache(Path(data_dir) / "artifact-cache", cache_bytes)
        try:
            return S3Store(bucket, prefix, s3_client(), cache=cache)
        except ValueError as exc:
            raise ValueError(f"{SETTING}={value!r}: the prefix is not usable: {exc}") from exc
    if Path(value).is_absolute():
        return LocalStore(Path(value))
    raise ValueError(
        f"{SETTING}={value!r} is neither empty (DATA_DIR/artifacts), an absolute folder, "
        "nor s3://bucket/prefix"
    )
