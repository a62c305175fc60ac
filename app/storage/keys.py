"""Keys are relative POSIX paths made of plain names. Anything a request controls may end
up in one (a dataset id, a model name), so a key is checked before the store touches a disk
or the network: no way out of the root, nothing a filesystem or S3 reads differently."""

import re

from app.storage.errors import InvalidKey

MAX_KEY_BYTES = 512  # S3 allows 1024 with the store's prefix; a filesystem path ~4096
MAX_PART_BYTES = 200  # below NAME_MAX (255), leaving room for a temp file's suffix
# A part starts with a letter, digit or underscore: no ".", "..", hidden or temp names
# (the stores keep their own temp files under dot-names), no leading "-".
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def validate_key(key: str) -> str:
    """The key itself, or InvalidKey saying what is wrong with it."""
    if not isinstance(key, str) or not key:
        raise InvalidKey("an artifact key must be a non-empty string")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidKey(f"artifact key is longer than {MAX_KEY_BYTES} bytes")
    for part in key.split("/"):
        _check_part(key, part)
    return key


def _check_part(key: str, part: str) -> None:
    shown = ascii(key)
    if not part:
        raise InvalidKey(f"artifact key {shown} has an empty part (leading, trailing or '//')")
    if part in (".", ".."):
        raise InvalidKey(f"artifact key {shown} has a '{part}' part")
    if len(part) > MAX_PART_BYTES:
        raise InvalidKey(f"artifact key {shown} has a part longer than {MAX_PART_BYTES} bytes")
    if not _PART.fullmatch(part):
        raise InvalidKey(
            f"artifact key {shown} has a part that is not a plain name "
            "(letters, digits, '.', '_', '-', not starting with '.' or '-')"
        )


def validate_sha256(sha256: str) -> str:
    """A hex sha256, lowercased: the read cache names files by it, so it is checked too."""
    value = sha256.lower() if isinstance(sha256, str) else ""
    if not _SHA256.fullmatch(value):
        raise InvalidKey(f"{ascii(sha256)[:80]} is not a sha256 (64 hex digits)")
    return value
