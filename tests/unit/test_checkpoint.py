"""Checkpoint format v1: tensors only, atomic, versioned, loadable without unpickling."""

import json
from pathlib import Path
from unittest import mock

import pytest
import torch
from safetensors.torch import save_file

from app.ml import checkpoint
from app.ml.checkpoint import CheckpointError


def test_roundtrip_keeps_tensors_and_meta(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    tensors = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([1, 2], dtype=torch.int64)}
    sha = checkpoint.save(path, tensors, {"epoch": 3, "arch": {"hidden": [4]}})
    loaded = checkpoint.load(path)
    assert loaded.meta == {"epoch": 3, "arch": {"hidden": [4]}}
    assert torch.equal(loaded.tensors["a"], tensors["a"]) and torch.equal(
        loaded.tensors["b"], tensors["b"]
    )
    assert sha == checkpoint.sha256_file(path) and len(sha) == 64


@pytest.mark.parametrize(
    "make", [lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), lambda p: torch.optim.Adam(p)]
)
def test_optimizer_state_survives_flattening(tmp_path: Path, make) -> None:  # type: ignore[no-untyped-def]
    model = torch.nn.Linear(3, 2)
    opt = make(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors, skeleton = checkpoint.flatten_state(opt.state_dict(), "optim")
    checkpoint.save(tmp_path / "o.safetensors", tensors, {"optimizer": skeleton})
    loaded = checkpoint.load(tmp_path / "o.safetensors")
    restored = checkpoint.unflatten_state(loaded.meta["optimizer"], loaded.tensors)
    fresh = make(model.parameters())
    fresh.load_state_dict(restored)
    for key, state in opt.state_dict()["state"].items():
        for name, value in state.items():
            got = fresh.state_dict()["state"][key][name]
            assert torch.equal(got, value) if isinstance(value, torch.Tensor) else got == value
    assert fresh.state_dict()["param_groups"] == opt.state_dict()["param_groups"]


def test_non_tensor_objects_are_refused() -> None:
    with pytest.raises(TypeError):
        checkpoint.flatten_state({"x": object()}, "s")


def test_a_failed_write_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    checkpoint.save(path, {"w": torch.ones(2)}, {"epoch": 1})
    with (
        mock.patch("app.ml.checkpoint.os.replace", side_effect=OSError("disk full")),
        pytest.raises(OSError),
    ):
        checkpoint.save(path, {"w": torch.zeros(2)}, {"epoch": 2})
    assert checkpoint.load(path).meta == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]  # no temp file left behind


def test_corrupt_missing_and_foreign_files_raise_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="missing"):
        checkpoint.load(tmp_path / "nope.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x80\x04\x95 pickle-ish bytes")
    with pytest.raises(CheckpointError):
        checkpoint.load(junk)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.ones(1)}, str(foreign), metadata={"format": "other"})
    with pytest.raises(CheckpointError, match=r"not a trainserve\.checkpoint v1"):
        checkpoint.load(foreign)


def test_the_file_is_plain_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    checkpoint.save(path, {"w": torch.ones(2)}, {"k": "v"})
    raw = path.read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    assert header["__metadata__"]["format"] == "trainserve.checkpoint"
    assert header["__metadata__"]["version"] == "1"
