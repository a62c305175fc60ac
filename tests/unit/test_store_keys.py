"""Artifact keys are checked before any I/O, TRAINSERVE_ARTIFACT_STORE is read strictly, and
the folder store's put is durable (temp file fsynced, renamed, the folder fsynced)."""

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from app.storage import InvalidKey, LocalStore, S3Store, store_from_url, validate_key
from app.storage.keys import MAX_KEY_BYTES, validate_sha256

GOOD = [
    "data.npz",
    "datasets/0f3c9a/data.npz",
    "jobs/5e1d/attempt-2/epoch-0007.safetensors",
    "models/digits-mlp/v3/bundle.safetensors",
    "_x/a.b-c_d",
    "a" * 200,
    "/".join(["abcdefgh"] * 56),  # 503 bytes
]

BAD = {
    "parent": "../x",
    "parent inside": "a/../../x",
    "dot": "a/./b",
    "absolute": "/etc/passwd",
    "empty part": "a//b",
    "trailing slash": "a/b/",
    "backslash": "a\\b",
    "windows drive": "C:\\x",
    "nul": "a/\x00b",
    "newline": "a/b\n",
    "space": "a b",
    "hidden or temp name": "a/.x.1234.tmp",
    "leading dash": "-rf",
    "unicode look-alike": "a/\u2024\u2024/x",
    "too long": "a" * 2000,
    "part too long": "a" * 201,
    "empty": "",
    "percent-encoded": "a/%2e%2e/x",
    "tilde": "~/x",
}


@pytest.mark.parametrize("key", GOOD)
def test_plain_relative_paths_are_keys(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize("key", BAD.values(), ids=BAD.keys())
def test_anything_else_is_refused(key: str) -> None:
    with pytest.raises(InvalidKey):
        validate_key(key)


def test_the_length_bound_is_in_bytes() -> None:
    validate_key("/".join(["a" * 100] * 5))
    with pytest.raises(InvalidKey, match=f"longer than {MAX_KEY_BYTES} bytes"):
        validate_key("/".join(["a" * 100] * 6))


def test_a_non_string_is_refused() -> None:
    with pytest.raises(InvalidKey):
        validate_key(None)  # type: ignore[arg-type]


def test_a_sha256_is_64_hex_digits() -> None:
    digest = "AB" * 32
    assert validate_sha256(digest) == "ab" * 32
    for bad in ["", "ab" * 31, "ab" * 33, "../../" + "a" * 58, "g" * 64, None]:
        with pytest.raises(InvalidKey, match="is not a sha256"):
            validate_sha256(bad)  # type: ignore[arg-type]


class NoIO:
    """Stands in for an S3 client: any use at all fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the S3 client was used ({name}) before the key was checked")


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a//b", "a\\b", "a\x00", "a" * 2000])
def test_a_store_refuses_a_bad_key_before_touching_anything(key: str, tmp_path: Path) -> None:
    root = tmp_path / "root"
    stores = [LocalStore(root), S3Store("bucket", "p", NoIO(), cache=None)]  # type: ignore[arg-type]
    for store in stores:
        for call in ("exists", "delete", "delete_prefix"):
            with pytest.raises(InvalidKey):
                getattr(store, call)(key)
        with pytest.raises(InvalidKey):
            store.put(key, tmp_path / "never-read")
        with pytest.raises(InvalidKey):
            store.fetch(key, "0" * 64)
        with pytest.raises(InvalidKey):
            store.fetch("a/b", "../" + key)
    assert not root.exists()


def test_the_setting_picks_the_store(tmp_path: Path) -> None:
    default = store_from_url("", tmp_path)
    assert isinstance(default, LocalStore) and default.root == (tmp_path / "artifacts").resolve()
    folder = store_from_url("/srv/trainserve-artifacts", tmp_path)
    assert isinstance(folder, LocalStore) and folder.root == Path("/srv/trainserve-artifacts")
    s3 = store_from_url("s3://my-bucket/team/a/", tmp_path, cache_bytes=123)
    assert isinstance(s3, S3Store) and (s3.bucket, s3.prefix) == ("my-bucket", "team/a")
    assert s3.where == "s3://my-bucket/team/a"
    assert (s3.cache.root, s3.cache.max_bytes) == (tmp_path / "artifact-cache", 123)
    bare = store_from_url("s3://my-bucket", tmp_path)
    assert isinstance(bare, S3Store) and bare.prefix == ""


@pytest.mark.parametrize(
    "value",
    [
        "relative/folder",
        "file:///srv/x",
        "s3://",
        "s3://UPPER/x",
        "s3://b/x",
        "s3://ok-bucket/../x",
        "gs://b/x",
    ],
)
def test_anything_else_in_the_setting_is_refused_by_name(value: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="TRAINSERVE_ARTIFACT_STORE"):
        store_from_url(value, tmp_path)


def test_a_local_put_is_durable_and_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The temp file's bytes are fsynced before the rename, the folder after it, and the
    new folders into the ones above them."""
    events: list[tuple[str, str]] = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        events.append(("fsync", path + "/" if stat.S_ISDIR(os.fstat(fd).st_mode) else path))
        fsync(fd)

    def recording_replace(src: str | Path, dst: str | Path) -> None:
        events.append(("replace", f"{src} -> {dst}"))
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    (tmp_path / "src").write_bytes(b"bytes")
    store = LocalStore(tmp_path / "root")
    store.root.mkdir()
    stored = store.put("a/b/c.bin", tmp_path / "src")

    root, final = store.root, store.root / "a/b/c.bin"
    assert events[:2] == [("fsync", f"{root}/"), ("fsync", f"{root}/a/")]  # new folders
    kind, temp = events[2]
    assert (
        kind == "fsync"
        and Path(temp).parent == final.parent
        and Path(temp).name.startswith(".c.bin.")
    )
    assert events[3:] == [("replace", f"{temp} -> {final}"), ("fsync", f"{final.parent}/")]
    assert final.read_bytes() == b"bytes" and stored.size == 5
    assert sorted(p.name for p in final.parent.iterdir()) == ["c.bin"]
