"""An uploaded file, copied to disk as it streams in: what every upload route receives."""

import hashlib
from pathlib import Path
from typing import Any, BinaryIO

from app.core.errors import PayloadTooLarge, Unprocessable

CHUNK_BYTES = 1 << 20


def receive(
    upload: BinaryIO, path: Path, limit: int, setting: str, empty_code: str
) -> dict[str, Any]:
    """Copy an upload to path in chunks, counting: Content-Length alone is not trusted, and
    nothing past `limit` (the setting of that name) is written. An empty file is a 422 with
    the upload's own error code."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "xb") as out:
        while chunk := upload.read(CHUNK_BYTES):
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(
                    f"the file is larger than {limit} bytes (TRAINSERVE_{setting.upper()})",
                    details={"setting": setting, "limit": limit},
                )
            digest.update(chunk)
            out.write(chunk)
    if size == 0:
        raise Unprocessable("the file is empty", code=empty_code)
    return {"bytes": size, "sha256": digest.hexdigest()}
