"""The folder store: the embedded default (DATA_DIR/artifacts), or a folder every host
mounts. A fetch returns the stored file itself, no copy, after checking its sha256."""

import os
import shutil
import time
from pathlib import Path

from app.core.files import sha256_file
from app.storage.base import ArtifactStore, Stored
from app.storage.errors import ArtifactNotFound, CorruptArtifact, InvalidKey, StoreUnavailable
from app.storage.files import (
    HashMemo,
    copy_hashed,
    fsync_file,
    make_folders,
    publish,
    temp_beside,
)

STAGING = ".staging"


class LocalStore(ArtifactStore):
    def __init__(self, root: Path, *, memo: HashMemo | None = None) -> None:
        self.root = Path(root).expanduser().resolve()
        self._memo = memo or HashMemo()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        # A valid key cannot leave the root; a symlink someone put inside it could.
        path = self.root / key
        if not path.resolve().is_relative_to(self.root):
            raise InvalidKey(f"artifact key {key!r} leads outside {self.root} (a symlink?)")
        return path

    def _staging(self) -> Path:
        # A dot-name: no valid key reaches it; clean_incomplete sweeps what is left in it.
        return self.root / STAGING

    def _put(self, key: str, local_path: Path, consume: bool) -> Stored:
        path = self._path(key)
        self.root.mkdir(parents=True, exist_ok=True)
        make_folders(path.parent, self.root)
        if consume and _same_disk(local_path, self.root):
            # The caller's own file, on this disk: renamed into place, not copied.
            sha256, size = sha256_file(local_path), local_path.stat().st_size
            fsync_file(local_path)
            publish(local_path, path)
            self._memo.forget(path)
            return Stored(key, sha256, size)
        tmp = temp_beside(path)
        try:
            sha256, size = copy_hashed(local_path, tmp)
            publish(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return Stored(key, sha256, size)

    def _fetch(self, key: str, sha256: str) -> Path:
        path = self._path(key)
        try:
            actual = self._memo.sha256(path)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ArtifactNotFound(key, str(self.root)) from None
        if actual != sha256:
            raise CorruptArtifact(key, sha256, actual, str(self.root))
        return path

    def _exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def _delete(self, key: str) -> None:
        path = self._path(key)
        self._memo.forget(path)
        path.unlink(missing_ok=True)

    def _delete_prefix(self, prefix: str) -> int:
        folder = self._path(prefix)
        if not folder.is_dir():
            return 0
        count = sum(1 for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        shutil.rmtree(folder)
        return count

    def probe(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"artifact store {self.root} cannot be made: {exc}") from exc
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StoreUnavailable(f"artifact store {self.root} is not writable by this process")

    def clean_incomplete(self, older_than_s: float) -> int:
        if not self.root.is_dir():
            return 0
        cutoff, count = time.time() - older_than_s, 0
        for tmp in self.root.rglob(".*.tmp"):
            try:
                if tmp.is_file() and tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
                    count += 1
            except FileNotFoundError:  # another process cleaned it first
                continue
        return count


def _same_disk(path: Path, root: Path) -> bool:
    return path.stat().st_dev == root.stat().st_dev
