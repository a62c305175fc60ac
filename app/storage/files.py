"""Local file steps both the folder store and the read cache take: copy while hashing,
publish by rename, and a remembered sha256 so a big file is not hashed on every read."""

import hashlib
import os
import secrets
import threading
import time
from collections import OrderedDict
from pathlib import Path

from app.core.files import sha256_file

BLOCK = 1 << 20


def copy_hashed(src: Path, dst: Path) -> tuple[str, int]:
    """Copy src to the new file dst, fsynced; return (sha256, size) of the bytes read."""
    digest, size = hashlib.sha256(), 0
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        for block in iter(lambda: fin.read(BLOCK), b""):
            digest.update(block)
            fout.write(block)
            size += len(block)
        fout.flush()
        os.fsync(fout.fileno())
    return digest.hexdigest(), size


def temp_beside(path: Path) -> Path:
    """A dot-name in path's folder (so os.replace stays on one filesystem); no valid key is
    a dot-name, so a temp file is never read as an artifact."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def publish(tmp: Path, path: Path) -> None:
    """Rename the complete, fsynced tmp onto path, then fsync the folder: readers see the
    old file or the new one, and once this returns a crash loses neither."""
    os.replace(tmp, path)
    fsync_path(path.parent)


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as fp:
        os.fsync(fp.fileno())


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_folders(folder: Path, root: Path) -> None:
    """mkdir -p below root, each new folder fsynced into the one above it."""
    if folder == root or folder.is_dir():
        return
    make_folders(folder.parent, root)
    folder.mkdir(exist_ok=True)
    fsync_path(folder.parent)


class HashMemo:
    """sha256 of files, remembered in this process by (device, inode, size, mtime), like
    git's index. A write changes the mtime, unless it lands in the same clock tick as the
    hashing: so, as git does for "racy" entries, a file modified less than `settle_s`
    before it was hashed is not remembered and is hashed again next time."""

    def __init__(self, entries: int = 4096, settle_s: float = 2.0) -> None:
        self._memo: OrderedDict[Path, tuple[tuple[int, ...], str]] = OrderedDict()
        self._entries, self._settle_ns = entries, int(settle_s * 1e9)
        self._lock = threading.Lock()

    def sha256(self, path: Path) -> str:
        sig = _signature(path)
        with self._lock:
            seen = self._memo.get(path)
            if seen is not None and seen[0] == sig:
                self._memo.move_to_end(path)
                return seen[1]
        started = time.time_ns()
        digest = sha256_file(path)
        if _signature(path) == sig and sig[3] < started - self._settle_ns:
            self._remember(path, sig, digest)
        return digest

    def forget(self, path: Path) -> None:
        with self._lock:
            self._memo.pop(path, None)

    def _remember(self, path: Path, sig: tuple[int, ...], digest: str) -> None:
        with self._lock:
            self._memo[path] = (sig, digest)
            self._memo.move_to_end(path)
            while len(self._memo) > self._entries:
                self._memo.popitem(last=False)


def _signature(path: Path) -> tuple[int, ...]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
