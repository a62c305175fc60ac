"""A full disk is told apart from a bug wherever it surfaces: an OSError, a safetensors write,
SQLite's "database or disk is full". (tests/e2e/test_disk_full.py fills a real disk.)"""

import errno
import sqlite3
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError
from sqlalchemy.exc import OperationalError

from app.core.errors import StorageFull, storage_full
from app.ml import checkpoint


def test_a_safetensors_write_on_a_full_disk_raises_enospc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """safetensors reports a full disk as a SafetensorError; this is its message, verbatim, from
    a checkpoint written to a full tmpfs (it failed that job for good, as an unknown error)."""
    message = "Error while serializing: I/O error: No space left on device (os error 28)"

    def full_disk(*_: object, **__: object) -> None:
        raise SafetensorError(message)

    monkeypatch.setattr(checkpoint, "save_file", full_disk)
    with pytest.raises(OSError) as caught:
        checkpoint.save(tmp_path / "c.safetensors", {"w": torch.zeros(4)}, {})
    assert caught.value.errno == errno.ENOSPC and not list(tmp_path.iterdir())
    full = storage_full(caught.value)
    assert isinstance(full, StorageFull) and full.status_code == 507


def test_a_full_database_is_storage_full_and_other_errors_are_not() -> None:
    sqlite_full = OperationalError(
        "INSERT ...", {}, sqlite3.OperationalError("database or disk is full")
    )
    assert storage_full(sqlite_full) is not None
    locked = OperationalError("INSERT ...", {}, sqlite3.OperationalError("database is locked"))
    assert storage_full(locked) is None
    assert storage_full(ValueError("no")) is None
    assert storage_full(OSError(errno.EACCES, "denied")) is None


def test_a_full_disk_is_found_behind_the_error_it_caused() -> None:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/data/x")
        except OSError as exc:
            raise RuntimeError("saving the model failed") from exc
    except RuntimeError as wrapped:
        assert storage_full(wrapped) is not None
