"""Helpers for the files the service keeps: here, below everything, so datasets, checkpoints
and the model cache share them without importing one another (or torch)."""

import hashlib
from pathlib import Path


def sha256_file(path: Path) -> str:
    """The file's SHA-256, read in 1 MiB blocks: a file of gigabytes costs no memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
