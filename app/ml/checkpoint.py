"""Checkpoint format v1: one safetensors file, written atomically, loaded without unpickling.

Tensors live in the safetensors body; everything else (arch arguments, epoch, step, the
non-tensor parts of optimizer state) is JSON in its header. Nested state such as an
optimizer's state_dict is flattened: each tensor gets a dotted key and the JSON skeleton
holds {"__tensor__": key} where it stood.

"Checkpoint" means this file format wherever the code says it: the worker's resume points
(worker/training/resume.py) and the model bundles serving loads (app/ml/bundle.py) are
both written as one.
"""

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from app.core.files import sha256_file

FORMAT = "trainserve.checkpoint"
VERSION = 1


class CheckpointError(Exception):
    """A checkpoint that is missing, corrupt, or of a format this code does not read."""


@dataclass
class Checkpoint:
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]


def save(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> str:
    """Write atomically (temp file, fsync, rename, fsync dir); return the file's sha256."""
    _make_folders(path.parent)
    body = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    header = {"format": FORMAT, "version": str(VERSION), "meta": json.dumps(meta)}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        _save_file(body, tmp, header)
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync(path.parent)
    return sha256_file(path)


# safetensors reports an I/O failure as "... (os error 28)" in a SafetensorError.
_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def _save_file(body: dict[str, torch.Tensor], path: Path, header: dict[str, str]) -> None:
    """safetensors' save_file, with its I/O failures raised as the OSError they are (so a full
    disk is told apart from a bug: ENOSPC)."""
    try:
        save_file(body, str(path), metadata=header)
    except SafetensorError as exc:
        found = _OS_ERROR.search(str(exc))
        if found is None:
            raise
        code = int(found.group(1))
        raise OSError(code, os.strerror(code), str(path)) from exc


def load(path: Path, device: str = "cpu") -> Checkpoint:
    if not path.is_file():
        raise CheckpointError(f"checkpoint file is missing: {path.name}")
    try:
        with safe_open(str(path), framework="pt", device=device) as fh:
            header = fh.metadata() or {}
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path.name} is unreadable: {exc}") from exc
    if header.get("format") != FORMAT or header.get("version") != str(VERSION):
        raise CheckpointError(f"checkpoint {path.name} is not a {FORMAT} v{VERSION} file")
    return Checkpoint(tensors, json.loads(header["meta"]))


def flatten_state(state: Any, prefix: str) -> tuple[dict[str, torch.Tensor], Any]:
    """Split nested state into (tensors by dotted key, a JSON skeleton referring to them)."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(node: Any, key: str) -> Any:
        if isinstance(node, torch.Tensor):
            tensors[key] = node
            return {"__tensor__": key}
        if isinstance(node, dict):
            return {
                "__dict__": [
                    [walk(k, f"{key}.k{i}"), walk(v, f"{key}.{i}")]
                    for i, (k, v) in enumerate(node.items())
                ]
            }
        if isinstance(node, list | tuple):
            kind = "__tuple__" if isinstance(node, tuple) else "__list__"
            return {kind: [walk(v, f"{key}.{i}") for i, v in enumerate(node)]}
        if node is None or isinstance(node, bool | int | float | str):
            return node
        raise TypeError(f"cannot store a {type(node).__name__} in a checkpoint")

    return tensors, walk(state, prefix)


def unflatten_state(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            return tensors[skeleton["__tensor__"]]
        if "__dict__" in skeleton:
            return {
                unflatten_state(k, tensors): unflatten_state(v, tensors)
                for k, v in skeleton["__dict__"]
            }
        if "__list__" in skeleton:
            return [unflatten_state(v, tensors) for v in skeleton["__list__"]]
        if "__tuple__" in skeleton:
            return tuple(unflatten_state(v, tensors) for v in skeleton["__tuple__"])
    return skeleton


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_folders(folder: Path) -> None:
    """mkdir -p, each new folder fsynced into the one above it: a file renamed into a folder
    that a crash then loses is lost too."""
    if folder.is_dir():
        return
    _make_folders(folder.parent)
    folder.mkdir(exist_ok=True)
    _fsync(folder.parent)
