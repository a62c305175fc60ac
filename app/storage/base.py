"""The interface every backend implements. The public methods check the key, then call the
backend: no backend can be handed a key that leaves its root."""

import os
import secrets
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from app.storage.keys import validate_key, validate_sha256


@dataclass(frozen=True)
class Stored:
    """What a put published: the caller records sha256 (and size) beside its pointer in the
    database, and passes sha256 back to fetch. Write the object, then commit the pointer."""

    key: str
    sha256: str
    size: int


class ArtifactStore(ABC):
    def put(self, key: str, local_path: Path, *, consume: bool = False) -> Stored:
        """Publish the file's bytes under key, atomically: a reader sees the whole object or
        none (the old one, if any, until the new one is complete). consume: the file is the
        caller's own (written under staged()), which the store may move rather than copy."""
        return self._put(validate_key(key), Path(local_path), consume)

    @contextmanager
    def staged(self, name: str) -> Iterator[Path]:
        """A fresh local path to write an artifact at before put(key, path, consume=True): on
        the store's own disk, so the put renames it instead of copying. Whatever is left
        there afterwards is removed; one a killed process left, by clean_incomplete."""
        folder = self._staging()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f".{os.getpid()}.{secrets.token_hex(8)}.{name}.tmp"
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)

    def fetch(self, key: str, sha256: str) -> Path:
        """A local file holding key's bytes, checked against sha256 (CorruptArtifact if they
        differ, ArtifactNotFound if there is none). Open it right away and do not write to
        it: a cached copy may be evicted later, an open file stays readable."""
        return self._fetch(validate_key(key), validate_sha256(sha256))

    def exists(self, key: str) -> bool:
        return self._exists(validate_key(key))

    def delete(self, key: str) -> None:
        """Remove key's object; nothing there is not an error."""
        self._delete(validate_key(key))

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object under the folder `prefix` ("jobs/abc" removes "jobs/abc/..."
        and not "jobs/abcd"); return how many were removed."""
        return self._delete_prefix(validate_key(prefix.removesuffix("/")))

    @abstractmethod
    def probe(self) -> None:
        """Quickly (a few seconds at most, no retries): StoreError unless the store can be
        reached and written to now. For readiness checks."""

    @abstractmethod
    def clean_incomplete(self, older_than_s: float) -> int:
        """Remove what puts killed half-way left behind (never readable under a key, but it
        takes space), started more than older_than_s ago; return how many."""

    @abstractmethod
    def _staging(self) -> Path:
        """The local folder staged() writes in (never under a key a reader can fetch)."""

    @abstractmethod
    def _put(self, key: str, local_path: Path, consume: bool) -> Stored: ...

    @abstractmethod
    def _fetch(self, key: str, sha256: str) -> Path: ...

    @abstractmethod
    def _exists(self, key: str) -> bool: ...

    @abstractmethod
    def _delete(self, key: str) -> None: ...

    @abstractmethod
    def _delete_prefix(self, prefix: str) -> int: ...
