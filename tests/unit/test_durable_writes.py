"""An atomic write is durable only once the folder holding the renamed file is fsynced (and the
folder above it, when the folder is new): each os.fsync is recorded, with what its fd is."""

import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from app.datasets.stored import write_stored
from app.ml import checkpoint
from app.storage import LocalStore


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """("replace", destination) and ("fsync", path synced: a folder ends with '/')."""
    recorded: list[tuple[str, str]] = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        folder = stat.S_ISDIR(os.fstat(fd).st_mode)
        recorded.append(("fsync", path + "/" if folder else path))
        fsync(fd)

    def recording_replace(src: str | Path, dst: str | Path) -> None:
        replace(src, dst)
        recorded.append(("replace", str(dst)))

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    return recorded


def test_a_dataset_file_is_durable_in_its_new_folder(
    tmp_path: Path, events: list[tuple[str, str]]
) -> None:
    """Staged, fsynced, renamed under its key by the store, each new folder fsynced into
    the one above it and the file's folder after the rename."""
    store = LocalStore(tmp_path)
    with store.staged("data.npz") as staged:
        write_stored(staged, {"x": np.zeros((2, 2)), "y": np.arange(2)})
        store.put("datasets/d1/data.npz", staged, consume=True)
    folder = tmp_path / "datasets" / "d1"
    assert events == [
        ("fsync", str(staged)),  # write_stored
        ("fsync", f"{tmp_path}/"),  # datasets/ made
        ("fsync", f"{folder.parent}/"),  # datasets/d1 made
        ("fsync", str(staged)),  # the store's own, before the rename
        ("replace", f"{folder}/data.npz"),
        ("fsync", f"{folder}/"),
    ]


def test_a_checkpoint_is_durable_in_folders_it_made(
    tmp_path: Path, events: list[tuple[str, str]]
) -> None:
    path = tmp_path / "jobs" / "j1" / "attempt-1" / "epoch-0001.safetensors"
    checkpoint.save(path, {"w": torch.ones(2)}, {"epoch": 1})
    made = [tmp_path / "jobs", tmp_path / "jobs" / "j1", path.parent]
    assert events[: len(made)] == [("fsync", f"{folder.parent}/") for folder in made]
    tmp = events[len(made)][1]
    assert events[len(made) :] == [
        ("fsync", tmp),
        ("replace", str(path)),
        ("fsync", f"{path.parent}/"),
    ]
    checkpoint.save(path, {"w": torch.zeros(2)}, {"epoch": 2})  # folders exist: no mkdir syncs
    assert [e for e in events[-3:] if e[0] == "fsync" and e[1].endswith("/")] == [
        ("fsync", f"{path.parent}/")
    ]
