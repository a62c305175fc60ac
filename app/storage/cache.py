"""Each host's bounded read cache of fetched objects, shared by its processes.

Files are named by their sha256 (objects/ab/abcd...), so a key that now holds other bytes
never serves the old ones, and two keys with the same bytes share a file. A download goes
to tmp/, is checked, and only then renamed into objects/: a name in objects/ always holds
complete, checked bytes. Last use is the file's atime, set on every hit (explicitly: mounts
with noatime or relatime would not); past max_bytes the least recently used files go.
Several processes may fill and evict at once: renames are atomic, a file another process
has open stays readable after it is unlinked, and a race costs at most a second download."""

import logging
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.core.files import sha256_file
from app.storage.errors import CorruptArtifact
from app.storage.files import HashMemo

log = logging.getLogger(__name__)

STALE_TMP_S = 3600.0  # a download this old was left by a killed process


class ReadCache:
    def __init__(self, root: Path, max_bytes: int, *, memo: HashMemo | None = None) -> None:
        self.root, self.max_bytes = Path(root), max_bytes
        self.objects, self.tmp = self.root / "objects", self.root / "tmp"
        self._memo = memo or HashMemo()

    def __repr__(self) -> str:
        return f"ReadCache({str(self.root)!r}, max_bytes={self.max_bytes})"

    def path_for(self, sha256: str) -> Path:
        return self.objects / sha256[:2] / sha256

    def get(self, sha256: str) -> Path | None:
        """The cached file with these bytes, or None. A file whose bytes no longer match its
        name (bit rot, an outside write) is removed, and the caller downloads it again."""
        path = self.path_for(sha256)
        try:
            actual = self._memo.sha256(path)
        except FileNotFoundError:
            return None
        if actual != sha256:
            log.warning("read cache: %s no longer holds its bytes; removed", path)
            self._discard(path)
            return None
        return path if _touch(path) else None

    @contextmanager
    def download(self) -> Iterator[Path]:
        """A fresh path under tmp/ to download into; removed afterwards unless admitted."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        path = self.tmp / f"{os.getpid()}.{secrets.token_hex(8)}"
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)

    def admit(self, tmp: Path, key: str, sha256: str, where: str) -> Path:
        """Check the downloaded tmp against sha256, rename it into the cache and evict down
        to max_bytes. A mismatch raises CorruptArtifact; the bad bytes are not kept."""
        actual = sha256_file(tmp)
        if actual != sha256:
            tmp.unlink(missing_ok=True)
            raise CorruptArtifact(key, sha256, actual, where)
        path = self.path_for(sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, path)
        _touch(path)
        self.evict(keep=path)
        return path

    def adopt(self, path: Path, sha256: str) -> None:
        """Take in a file this host just stored, whose sha256 the put computed; it must be
        in tmp/ (the store's staging folder), so the rename stays on one disk."""
        target = self.path_for(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        _touch(target)
        self.evict(keep=target)

    def evict(self, keep: Path | None = None) -> int:
        """Remove the least recently used files until the rest fit in max_bytes (the one
        just fetched stays, even alone past the limit); return the bytes kept."""
        entries = sorted(self._entries(), key=lambda e: e[1])  # oldest use first
        total = sum(size for _, _, size in entries)
        for path, _, size in entries:
            if total <= self.max_bytes:
                break
            if path == keep:
                continue
            self._discard(path)
            total -= size
        if total > self.max_bytes:
            log.warning(
                "read cache %s holds %d bytes, past its %d", self.root, total, self.max_bytes
            )
        self._sweep_tmp()
        return total

    def size(self) -> int:
        return sum(size for _, _, size in self._entries())

    def _entries(self) -> Iterator[tuple[Path, int, int]]:
        for path in self.objects.glob("*/*"):
            st = _stat(path)
            if st is not None:
                yield path, st.st_atime_ns, st.st_size

    def _discard(self, path: Path) -> None:
        self._memo.forget(path)
        path.unlink(missing_ok=True)

    def _sweep_tmp(self) -> None:
        cutoff = time.time() - STALE_TMP_S
        for path in self.tmp.glob("*"):
            st = _stat(path)
            if st is not None and st.st_mtime < cutoff:
                path.unlink(missing_ok=True)


def _touch(path: Path) -> bool:
    """Mark a use: set atime, keep mtime (HashMemo's signature of the file). False when
    another process evicted it just now: the caller downloads it again."""
    try:
        os.utime(path, ns=(time.time_ns(), os.stat(path).st_mtime_ns))
    except FileNotFoundError:
        return False
    return True


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except FileNotFoundError:
        return None
