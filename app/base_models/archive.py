"""Unpacking an uploaded base model, a .zip or a .tar.gz (or a plain .tar), into an empty folder.

Whoever uploads the archive writes every header in it, so none is trusted: each member's path
and kind are checked, its bytes are streamed by hand and counted as they inflate, and nothing
goes through the libraries' extract(), which would write links and devices where they point.
"""

import gzip
import io
import re
import secrets
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Self

from app.core.config import Settings
from app.core.errors import PayloadTooLarge, Unprocessable

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

CHUNK = 1 << 20
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; an empty zip's end record
_GZIP_MAGIC = b"\x1f\x8b"
_DRIVE = re.compile(r"^[A-Za-z]:")
# A model folder is a few levels deep: these keep every path far inside PATH_MAX.
_MAX_DEPTH = 16
_MAX_PART_BYTES = 255
# A zip's central directory entry: 46 bytes, its name, extra fields and comment (often ~100).
_MAX_ZIP_ENTRY_BYTES = 4096
# tarfile reads a long name or a pax header whole into memory; real ones take a few hundred bytes.
_MAX_TAR_HEADER = 1 << 20
# The inflated tar stream holds headers and padding besides the files' bytes.
_TAR_OVERHEAD = 64 << 20
# What reading a damaged archive raises (RecursionError: tarfile recurses into chained pax
# headers). Errors writing under dest, such as a full disk, are not the archive's fault.
_DAMAGED = (
    zipfile.BadZipFile,
    zlib.error,
    tarfile.TarError,
    EOFError,
    gzip.BadGzipFile,
    NotImplementedError,
    RecursionError,
)
# What macOS's "Compress" adds beside the folder: not written, but counted like the rest.
_SKIPPED = frozenset({"__MACOSX", ".DS_Store"})
_ZIP_SPECIAL = {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}
_ZIP_SPECIAL |= {stat.S_IFIFO: "a fifo", stat.S_IFSOCK: "a socket"}
_TAR_SPECIAL = {tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device"}
_TAR_SPECIAL[tarfile.FIFOTYPE] = "a fifo"
_TAR_META = (
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
)


def extract_archive(source: Path, dest: Path, settings: Settings) -> None:
    """Unpack the .zip, .tar.gz or .tar in `source` into the empty folder `dest`, refusing any
    unsafe member and stopping at the limits. On an error dest may hold part of the files:
    the caller removes it."""
    kind = _kind(source)
    root = dest.resolve()
    unpacker = _Unpacker(root, Budget(settings, "the archive"))
    try:
        if kind == "zip":
            _unzip(source, unpacker)
        else:
            _untar(source, unpacker, gzipped=kind == "tar.gz")
    except _DAMAGED as exc:
        raise _damaged(exc) from exc
    if unpacker.budget.files == 0:
        raise invalid_archive("the archive holds no files: archive the model folder itself")
    _lift_single_folder(root)


class Budget:
    """The files, folders and bytes met so far against max_base_model_files and
    max_base_model_bytes: the first one past a limit is refused before it is written."""

    def __init__(self, settings: Settings, subject: str) -> None:
        self.subject = subject  # "the archive", "the folder": what the message blames
        self.max_files = settings.max_base_model_files
        self.max_bytes = settings.max_base_model_bytes
        self.files = self.folders = self.bytes = 0

    def add_file(self) -> None:
        self.files += 1
        if self.files > self.max_files:
            raise self._too_many("files")

    def add_folder(self) -> None:
        # Under the files' limit too: a model needs fewer folders than files, and each costs.
        self.folders += 1
        if self.folders > self.max_files:
            raise self._too_many("folders")

    def expect(self, files: int, size: int) -> None:
        """Refuse at once what headers already declare past the limits (they may lie the
        other way: add_bytes counts what is really read)."""
        if self.files + files > self.max_files:
            raise self._too_many("files")
        if self.bytes + size > self.max_bytes:
            raise self.too_large()

    def add_bytes(self, size: int) -> None:
        self.expect(0, size)
        self.bytes += size

    def too_large(self) -> PayloadTooLarge:
        message = f"{self.subject} holds more than {self.max_bytes} bytes"
        return over_limit(message, "max_base_model_bytes", self.max_bytes)

    def _too_many(self, what: str) -> PayloadTooLarge:
        message = f"{self.subject} holds more than {self.max_files} {what}"
        return over_limit(message, "max_base_model_files", self.max_files)


def over_limit(message: str, setting: str, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"{message}, past the limit of TRAINSERVE_{setting.upper()} ({limit}): use a smaller "
        "model, or have the operator raise the limit",
        details={"setting": setting, "limit": limit},
        code="payload_too_large",
    )


def invalid_archive(message: str, member: str | None = None) -> Unprocessable:
    details = {"member": member} if member is not None else None
    return Unprocessable(message, details=details, code="invalid_archive")


def _damaged(exc: BaseException) -> Unprocessable:
    return invalid_archive(
        f"the archive is damaged or cannot be read ({type(exc).__name__}: {exc}): upload it "
        "again, as a .zip or a .tar.gz of the model folder"
    )


@contextmanager
def _reading() -> Iterator[None]:
    """Around reads of the archive: an OSError there is its fault (a seek to an offset it
    forged), unlike one writing under dest (a full disk), which goes up as it is."""
    try:
        yield
    except OSError as exc:
        raise _damaged(exc) from exc


def _kind(source: Path) -> str:
    with open(source, "rb") as fh:
        magic = fh.read(4)
    if magic in _ZIP_MAGIC:
        return "zip"
    if magic.startswith(_GZIP_MAGIC):
        return "tar.gz"
    if _plain_tar(source):
        return "tar"
    raise invalid_archive(
        "the file is neither a .zip nor a .tar.gz: upload the model folder as one of them"
    )


def _plain_tar(source: Path) -> bool:
    # Not tarfile.is_tarfile(), which says yes to .tar.bz2 and .tar.xz too: their decoders
    # can take gigabytes of memory. "r:" reads an uncompressed tar and nothing else.
    try:
        with tarfile.open(source, "r:", tarinfo=_TarInfo):
            return True
    except tarfile.TarError:
        return False


class _Unpacker:
    """Writes members under root one by one, each path checked first."""

    def __init__(self, root: Path, budget: Budget) -> None:
        self.root = root
        self.budget = budget
        self.seen: set[PurePosixPath] = set()

    def folder(self, name: str) -> None:
        rel = self._claim(name)
        self.budget.add_folder()
        if rel.parts and not _SKIPPED.intersection(rel.parts):  # no parts: "./", root itself
            _make_folder(name, self._target(name, rel))

    def file(self, name: str, size: int) -> Path | None:
        """Where to write the bytes of a file member that declares `size` of them; None for
        one that is skipped (its bytes are counted all the same)."""
        rel = self._claim(name)
        if not rel.parts:
            raise invalid_archive(f"a file member has no name ({name!r})", name)
        self.budget.add_file()
        self.budget.expect(0, size)
        if _SKIPPED.intersection(rel.parts):
            self.budget.add_bytes(size)
            return None
        path = self._target(name, rel)
        _make_folder(name, path.parent)
        return path

    def write(self, name: str, src: IO[bytes], path: Path) -> None:
        try:
            with open(path, "xb") as out:
                self._copy(src, out)
        # Only open() raises these: the path is taken by a member of another kind.
        except (FileExistsError, IsADirectoryError, NotADirectoryError) as exc:
            raise _clash(name) from exc

    def _copy(self, src: IO[bytes], out: IO[bytes]) -> None:
        while True:
            with _reading():
                chunk = src.read(CHUNK)
            if not chunk:
                return
            # Counted before it is written: dest never holds more than the limit.
            self.budget.add_bytes(len(chunk))
            out.write(chunk)

    def _claim(self, name: str) -> PurePosixPath:
        rel = _relative(name)
        if rel in self.seen:
            raise invalid_archive(f"{name!r} appears twice in the archive", name)
        self.seen.add(rel)
        return rel

    def _target(self, name: str, rel: PurePosixPath) -> Path:
        path = self.root.joinpath(*rel.parts)
        if not path.resolve().is_relative_to(self.root):
            raise invalid_archive(f"{name!r} would be written outside the folder", name)
        return path


def _relative(name: str) -> PurePosixPath:
    reason = _unsafe(name)
    if reason is not None:
        raise invalid_archive(
            f"unsafe path in the archive: {name!r} {reason}; members must be relative paths "
            "inside the model folder",
            name,
        )
    return PurePosixPath(name)


def _unsafe(name: str) -> str | None:
    if "\x00" in name:
        return "contains a NUL byte"
    if "\\" in name:
        return "contains a backslash"
    if name.startswith("/") or _DRIVE.match(name):
        return "is absolute"
    parts = PurePosixPath(name).parts
    if ".." in parts:
        return "has a '..' component"
    if len(parts) > _MAX_DEPTH:
        return f"is nested deeper than {_MAX_DEPTH} folders"
    if any(len(part.encode("utf-8", "surrogateescape")) > _MAX_PART_BYTES for part in parts):
        return f"has a name longer than {_MAX_PART_BYTES} bytes"
    return None


def _make_folder(name: str, path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise _clash(name) from exc


def _clash(name: str) -> Unprocessable:
    return invalid_archive(f"{name!r} clashes with another member: a file and a folder", name)


def _not_plain(name: str, what: str) -> Unprocessable:
    return invalid_archive(
        f"{name!r} is {what}; an archive of a model folder holds only files and folders", name
    )


def _unzip(source: Path, unpacker: _Unpacker) -> None:
    _check_zip_directory(source, unpacker.budget)
    with _reading():
        archive = zipfile.ZipFile(source)
    with archive:
        members = [(info, _zip_is_folder(info)) for info in archive.infolist()]
        # The central directory's sizes, checked before a byte is inflated; they may lie.
        files = [info for info, is_folder in members if not is_folder]
        unpacker.budget.expect(len(files), sum(info.file_size for info in files))
        for info, is_folder in members:
            if is_folder:
                unpacker.folder(info.filename)
                continue
            path = unpacker.file(info.filename, info.file_size)
            if path is not None:
                with _reading():
                    src = archive.open(info)
                with src:
                    unpacker.write(info.filename, src, path)


def _check_zip_directory(source: Path, budget: Budget) -> None:
    """ZipFile() parses the whole central directory into objects before anything can count
    them: its size is bounded first, read from the end record by zipfile's own (private)
    reader, so that both read the same record."""
    with _reading(), open(source, "rb") as fh:
        end = zipfile._EndRecData(fh)  # type: ignore[attr-defined]
    limit = 2 * budget.max_files * _MAX_ZIP_ENTRY_BYTES  # files and folders
    if end is not None and end[zipfile._ECD_SIZE] > limit:  # type: ignore[attr-defined]
        size = end[zipfile._ECD_SIZE]  # type: ignore[attr-defined]
        message = f"the archive's list of members takes {size} bytes, more than {limit}"
        raise over_limit(message, "max_base_model_files", budget.max_files)


def _zip_is_folder(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16  # the unix mode, where a unix zip tool recorded one
    kind = stat.S_IFMT(mode)
    if stat.S_ISLNK(mode):
        raise _not_plain(info.filename, "a symbolic link")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise _not_plain(info.filename, _ZIP_SPECIAL.get(kind, "a special file"))
    if info.flag_bits & 0x1:
        raise invalid_archive(
            f"{info.filename!r} is encrypted: archive it without a password", info.filename
        )
    return info.is_dir() or kind == stat.S_IFDIR


def _untar(source: Path, unpacker: _Unpacker, gzipped: bool) -> None:
    with open(source, "rb") as raw, _inflating(raw, gzipped) as inflated:
        stream = _Capped(inflated, unpacker.budget.max_bytes + _TAR_OVERHEAD, unpacker.budget)
        with tarfile.open(name=None, mode="r|", fileobj=stream, tarinfo=_TarInfo) as archive:
            for member in archive:
                _untar_member(archive, member, unpacker)
        if gzipped:
            # gzip checks its CRC and length at the end of the stream, past the tar's end.
            while stream.read(CHUNK):
                pass


def _inflating(raw: io.BufferedReader, gzipped: bool) -> io.BufferedIOBase:
    return gzip.GzipFile(fileobj=raw) if gzipped else raw


def _untar_member(archive: tarfile.TarFile, member: tarfile.TarInfo, unpacker: _Unpacker) -> None:
    if member.issym() or member.islnk():
        kind = "a symbolic link" if member.issym() else "a hard link"
        raise _not_plain(member.name, f"{kind} (to {member.linkname!r})")
    if member.isdir():
        unpacker.folder(member.name)
        return
    if not member.isfile():
        raise _not_plain(member.name, _TAR_SPECIAL.get(member.type, "a special file"))
    path = unpacker.file(member.name, member.size)
    src = archive.extractfile(member)
    if path is not None and src is not None:
        with src:
            unpacker.write(member.name, src, path)


class _TarInfo(tarfile.TarInfo):
    """tarfile's header parser, made strict where it is lenient on untrusted input."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
        try:
            info = super().frombuf(buf, encoding, errors)
        except tarfile.HeaderError as exc:
            if buf == bytes(tarfile.BLOCKSIZE):
                raise  # the end-of-archive marker
            # tarfile quietly ends the archive at a missing or broken header past the first
            # one: a truncated upload would unpack to fewer files.
            raise tarfile.ReadError(f"a missing or damaged header ({exc})") from exc
        if info.type == tarfile.GNUTYPE_SPARSE:  # its map is read block by block, unbounded
            raise _not_plain(info.name, "a sparse file")
        if info.type in _TAR_META and info.size > _MAX_TAR_HEADER:
            raise invalid_archive(
                f"the archive has a tar header of {info.size} bytes (at most {_MAX_TAR_HEADER})"
            )
        return info


class _Capped(io.RawIOBase):
    """Reads at most `cap` bytes in all from `raw`, whatever the headers inside say: the
    inflated tar stream, its headers and the data tarfile skips included."""

    def __init__(self, raw: io.BufferedIOBase, cap: int, budget: Budget) -> None:
        super().__init__()
        self.raw = raw
        self.cap = cap
        self.budget = budget
        self.read_so_far = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: "WriteableBuffer") -> int:
        with _reading():
            count = self.raw.readinto(memoryview(buffer).cast("B")[:CHUNK])
        self.read_so_far += count
        if self.read_so_far > self.cap:
            raise self.budget.too_large()
        return count


def _lift_single_folder(root: Path) -> None:
    """An archive of the model folder itself holds one top folder: its contents move up."""
    entries = list(root.iterdir())
    if len(entries) != 1 or not entries[0].is_dir():
        return
    # Moved aside first: it may hold an entry of its own name (model/model/...).
    aside = entries[0].rename(root / f".unwrapping-{secrets.token_hex(8)}")
    for child in list(aside.iterdir()):
        child.rename(root / child.name)
    aside.rmdir()
