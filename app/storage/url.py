"""TRAINSERVE_ARTIFACT_STORE, read: which store this process uses."""

import os
import re
from functools import cache
from pathlib import Path
from typing import Protocol

from app.storage.base import ArtifactStore
from app.storage.cache import ReadCache
from app.storage.local import LocalStore
from app.storage.s3 import S3Store, s3_client

SETTING = "TRAINSERVE_ARTIFACT_STORE"
DEFAULT_CACHE_BYTES = 10 * 1024**3
# S3's rules for a bucket name: 3-63 lowercase letters, digits, dots and hyphens.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class StoreSettings(Protocol):
    """What store_for reads of app.core.config.Settings (which this layer cannot import)."""

    artifact_store: str
    data_dir: Path
    artifact_cache_bytes: int


def store_for(settings: StoreSettings) -> ArtifactStore:
    """This process's store for these settings, made once: its client and connection pool
    are shared by every request and job of the process (a forked child makes its own)."""
    return _made(
        settings.artifact_store, settings.data_dir, settings.artifact_cache_bytes, os.getpid()
    )


@cache
def _made(value: str, data_dir: Path, cache_bytes: int, pid: int) -> ArtifactStore:
    return store_from_url(value, data_dir, cache_bytes)


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
