"""The artifact store against a real S3 HTTP endpoint (moto's server, in a subprocess) and a
real folder: the same behaviour from both backends, then S3's own faults (retries, a dead
endpoint) through a proxy that breaks connections on purpose."""

import hashlib
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, ConnectionClosedError

from app.storage import (
    ArtifactNotFound,
    ArtifactStore,
    CorruptArtifact,
    InvalidKey,
    LocalStore,
    ReadCache,
    S3Store,
    StoreUnavailable,
    store_from_url,
)
from app.storage.s3 import s3_client
from tests.s3_support import FaultProxy, moto_server, use_aws
from tests.support import Proc, base_env, free_port, wait_until

MiB = 1024 * 1024
BUCKET = "trainserve-test"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def aws_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Credentials and region as an operator sets them; no endpoint (each test names one)."""
    with pytest.MonkeyPatch.context() as mp:
        use_aws(mp, tmp_path_factory.mktemp("aws"))
        yield


@pytest.fixture(scope="module")
def moto(aws_env: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with moto_server(tmp_path_factory.mktemp("moto")) as url:
        s3_client(endpoint_url=url).create_bucket(Bucket=BUCKET)
        yield url


@pytest.fixture
def raw(moto: str) -> Any:
    """A plain boto3 client on the same endpoint: the test's own view of the bucket."""
    return boto3.client("s3", endpoint_url=moto)


def s3_store(url: str, cache_dir: Path, cache_bytes: int = 64 * MiB, **client: Any) -> S3Store:
    return S3Store(
        BUCKET,
        f"t-{secrets.token_hex(4)}",
        s3_client(endpoint_url=url, **client),
        cache=ReadCache(cache_dir, cache_bytes),
        multipart_threshold=5 * MiB,
        part_size=5 * MiB,  # S3's smallest part: moto refuses less (test_moto_enforces...)
    )


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    return s3_store(request.getfixturevalue("moto"), tmp_path / "cache")


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def overwrite_object(store: ArtifactStore, key: str, data: bytes, sha256: str) -> None:
    """Change the stored bytes behind the store's back (bit rot, a stray writer)."""
    if isinstance(store, LocalStore):
        (store.root / key).write_bytes(data)
    else:
        assert isinstance(store, S3Store)
        raw = boto3.client("s3", endpoint_url=store.client.meta.endpoint_url)
        raw.put_object(
            Bucket=BUCKET, Key=f"{store.prefix}/{key}", Body=data, Metadata={"sha256": sha256}
        )


# --- the same behaviour from both backends --------------------------------------------------


def test_put_then_fetch_returns_the_bytes_and_their_sha256(
    store: ArtifactStore, tmp_path: Path
) -> None:
    data = os.urandom(100_000)
    stored = store.put("datasets/d1/data.npz", write(tmp_path / "in", data))
    assert (stored.key, stored.sha256, stored.size) == (
        "datasets/d1/data.npz",
        sha(data),
        len(data),
    )
    assert store.exists("datasets/d1/data.npz")
    assert store.fetch("datasets/d1/data.npz", stored.sha256).read_bytes() == data
    if isinstance(store, S3Store):  # the checksum also travels with the object
        head = store.client.head_object(Bucket=BUCKET, Key=f"{store.prefix}/datasets/d1/data.npz")
        assert head["Metadata"]["sha256"] == stored.sha256


def test_a_file_past_the_threshold_goes_up_in_parts_and_reads_back_identical(
    store: ArtifactStore, tmp_path: Path
) -> None:
    data = os.urandom(12 * MiB)
    stored = store.put("jobs/j1/model.safetensors", write(tmp_path / "big", data))
    assert stored.sha256 == sha(data)
    assert store.fetch("jobs/j1/model.safetensors", stored.sha256).read_bytes() == data
    if isinstance(store, S3Store):  # a multipart object's ETag ends in its number of parts
        name = f"{store.prefix}/jobs/j1/model.safetensors"
        assert store.client.head_object(Bucket=BUCKET, Key=name)["ETag"].endswith('-3"')


def test_a_missing_key_is_not_found_and_delete_is_idempotent(
    store: ArtifactStore, tmp_path: Path
) -> None:
    with pytest.raises(ArtifactNotFound, match=r"'nope/x\.bin' does not exist"):
        store.fetch("nope/x.bin", sha(b""))
    assert not store.exists("nope/x.bin")
    stored = store.put("a/x.bin", write(tmp_path / "x", b"x"))
    store.delete("a/x.bin")
    store.delete("a/x.bin")
    assert not store.exists("a/x.bin")
    with pytest.raises(ArtifactNotFound):
        store.fetch("a/x.bin", stored.sha256)


def test_delete_prefix_removes_a_folder_and_nothing_beside_it(
    store: ArtifactStore, tmp_path: Path
) -> None:
    src = write(tmp_path / "f", b"f")
    for key in ("jobs/ab/attempt-1/epoch-0001.safetensors", "jobs/ab/model.safetensors"):
        store.put(key, src)
    store.put("jobs/abc/model.safetensors", src)
    assert store.delete_prefix("jobs/ab") == 2
    assert not store.exists("jobs/ab/model.safetensors")
    assert store.exists("jobs/abc/model.safetensors")
    assert store.delete_prefix("jobs/ab/") == 0


def test_a_corrupted_object_is_refused_and_never_cached(
    store: ArtifactStore, tmp_path: Path
) -> None:
    data = os.urandom(64 * 1024)
    stored = store.put("jobs/j2/model.safetensors", write(tmp_path / "m", data))
    bad = bytearray(data)
    bad[1000] ^= 0xFF
    overwrite_object(store, "jobs/j2/model.safetensors", bytes(bad), stored.sha256)
    with pytest.raises(CorruptArtifact) as refused:
        store.fetch("jobs/j2/model.safetensors", stored.sha256)
    message = str(refused.value)
    assert "'jobs/j2/model.safetensors'" in message and "corrupt" in message
    assert stored.sha256 in message and sha(bytes(bad)) in message
    if isinstance(store, S3Store):  # nothing kept: no cached object, no download in tmp/
        assert store.cache.size() == 0 and list(store.cache.tmp.iterdir()) == []


def test_key_attacks_are_refused_before_any_io(store: ArtifactStore, tmp_path: Path) -> None:
    sent: list[str] = []
    if isinstance(store, S3Store):
        store.client.meta.events.register(
            "before-send", lambda request, **_: sent.append(request.url)
        )
    src = write(tmp_path / "src", b"payload")
    attacks = ["../x", "/etc/passwd", "a//b", "a\\b", "a/\x00b", "a" * 2000, "", ".", "a/../../x"]
    calls = {
        "put": (src,),
        "fetch": (sha(b"payload"),),
        "exists": (),
        "delete": (),
        "delete_prefix": (),
    }
    for key in attacks:
        for method, args in calls.items():
            with pytest.raises(InvalidKey):
                getattr(store, method)(key, *args)
    assert sent == []
    assert not (tmp_path / "x").exists() and not (tmp_path / "store").exists()
    if isinstance(store, S3Store):  # the probe itself works: a valid key is one request
        store.exists("a/b")
        assert len(sent) == 1


# --- an upload killed half-way --------------------------------------------------------------

# The child stops at the step named below and waits to be SIGKILLed there: for the folder,
# between the complete temp file and the rename; for S3, after the first of three parts.
CHILD = r"""
import os, sys, time
from pathlib import Path
from app.storage import LocalStore, ReadCache, S3Store
from app.storage.s3 import s3_client

def stop_here(*_, **__):
    print("STOPPED", flush=True)
    time.sleep(120)

kind, where, prefix, key, src = sys.argv[1:]
if kind == "local":
    store = LocalStore(Path(where))
    os.replace = stop_here
else:
    client = s3_client(endpoint_url=where)
    parts = []

    def count_part(**_):
        parts.append(1)
        if len(parts) == 2:
            stop_here()

    client.meta.events.register("before-call.s3.UploadPart", count_part)
    store = S3Store("trainserve-test", prefix, client, cache=ReadCache(Path(src + ".cache"), 1),
                    multipart_threshold=5 << 20, part_size=5 << 20, max_concurrency=1)
store.put(key, Path(src))
print("PUT RETURNED", flush=True)
"""


def kill_mid_put(store: ArtifactStore, key: str, src: Path, log: Path) -> None:
    if isinstance(store, LocalStore):
        kind, where, prefix = "local", str(store.root), ""
    else:
        assert isinstance(store, S3Store)
        kind, where, prefix = "s3", store.client.meta.endpoint_url, store.prefix
    env = base_env(PYTHONPATH=str(ROOT))
    env["PYTHONPATH"] = str(ROOT)
    proc = Proc([sys.executable, "-c", CHILD, kind, where, prefix, key, str(src)], env, log)
    try:
        wait_until(lambda: "STOPPED" in proc.output() or not proc.alive(), 30, "the put to stop")
        assert proc.alive(), proc.output()
        os.killpg(proc.popen.pid, signal.SIGKILL)
        proc.popen.wait(10)
    finally:
        proc.stop()
    assert "PUT RETURNED" not in proc.output()


@pytest.mark.parametrize("had_a_version", [False, True], ids=["new-key", "overwrite"])
def test_a_put_killed_half_way_publishes_nothing(
    store: ArtifactStore, tmp_path: Path, had_a_version: bool
) -> None:
    key = "jobs/j3/model.safetensors"
    old = os.urandom(1000)
    before = store.put(key, write(tmp_path / "old", old)) if had_a_version else None
    new = os.urandom(12 * MiB)
    kill_mid_put(store, key, write(tmp_path / "new", new), tmp_path / "child.log")

    if before is None:
        assert not store.exists(key)
        with pytest.raises(ArtifactNotFound):
            store.fetch(key, sha(new))
    else:  # the old version, whole, and nothing of the new one
        assert store.fetch(key, before.sha256).read_bytes() == old
        with pytest.raises(CorruptArtifact):
            store.fetch(key, sha(new))
    assert _leftovers(store) == 1  # the killed put's temp file or open multipart upload
    assert store.clean_incomplete(older_than_s=0) == 1
    assert _leftovers(store) == 0

    again = store.put(key, tmp_path / "new")
    assert store.fetch(key, again.sha256).read_bytes() == new


def _leftovers(store: ArtifactStore) -> int:
    if isinstance(store, LocalStore):
        return len(list(store.root.rglob(".*.tmp")))
    assert isinstance(store, S3Store)
    uploads = store.client.list_multipart_uploads(Bucket=BUCKET, Prefix=store.prefix + "/")
    for upload in uploads.get("Uploads", []):  # half-way: its first part is in
        parts = store.client.list_parts(
            Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"]
        )
        assert len(parts["Parts"]) == 1
    return len(uploads.get("Uploads", []))


# --- the folder store -----------------------------------------------------------------------


def test_a_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    write(outside / "secret", b"secret")
    store = LocalStore(tmp_path / "store")
    store.root.mkdir()
    (store.root / "link").symlink_to(outside)
    with pytest.raises(InvalidKey, match="outside"):
        store.fetch("link/secret", sha(b"secret"))
    with pytest.raises(InvalidKey):
        store.put("link/planted", write(tmp_path / "p", b"p"))
    assert not (outside / "planted").exists()


def test_a_local_fetch_returns_the_file_in_place_and_remembers_its_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path / "store")
    data = os.urandom(10_000)
    stored = store.put("d/x.bin", write(tmp_path / "x", data))
    path = store.root / "d" / "x.bin"
    old = time.time_ns() - 10 * 10**9  # written long enough ago for its mtime to be trusted
    os.utime(path, ns=(old, old))
    assert store.fetch("d/x.bin", stored.sha256) == path
    hashed: list[Path] = []
    import app.storage.files as files

    real = files.sha256_file
    monkeypatch.setattr(files, "sha256_file", lambda p: hashed.append(p) or real(p))
    assert store.fetch("d/x.bin", stored.sha256) == path
    assert hashed == []  # same inode, size and mtime: not hashed again
    path.write_bytes(b"y" * len(data))  # a write moves the mtime: hashed, and refused
    with pytest.raises(CorruptArtifact):
        store.fetch("d/x.bin", stored.sha256)
    assert hashed == [path]


# --- S3: the endpoint, parts, cache, faults -------------------------------------------------


def test_moto_enforces_s3s_smallest_part(raw: Any) -> None:
    upload = raw.create_multipart_upload(Bucket=BUCKET, Key="small-parts")
    parts = [
        {
            "PartNumber": n,
            "ETag": raw.upload_part(
                Bucket=BUCKET,
                Key="small-parts",
                UploadId=upload["UploadId"],
                PartNumber=n,
                Body=b"x" * 1024,
            )["ETag"],
        }
        for n in (1, 2)
    ]
    with pytest.raises(ClientError, match="EntityTooSmall"):
        raw.complete_multipart_upload(
            Bucket=BUCKET,
            Key="small-parts",
            UploadId=upload["UploadId"],
            MultipartUpload={"Parts": parts},
        )
    raw.abort_multipart_upload(Bucket=BUCKET, Key="small-parts", UploadId=upload["UploadId"])


def test_the_aws_variables_name_the_endpoint(
    moto: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto)
    store = store_from_url(f"s3://{BUCKET}/from-env", tmp_path / "data")
    assert isinstance(store, S3Store) and store.client.meta.endpoint_url == moto
    assert store.cache.root == tmp_path / "data" / "artifact-cache"
    stored = store.put("k/v.bin", write(tmp_path / "v", b"via the environment"))
    assert store.fetch("k/v.bin", stored.sha256).read_bytes() == b"via the environment"


def test_the_read_cache_stays_under_its_bound_and_refetches_what_it_evicted(
    moto: str, tmp_path: Path
) -> None:
    store = s3_store(moto, tmp_path / "cache", cache_bytes=300_000)
    blobs = {f"b/{i}.bin": os.urandom(100_000) for i in range(8)}
    stored = {k: store.put(k, write(tmp_path / "blob", v)) for k, v in blobs.items()}
    for key, data in blobs.items():
        assert store.fetch(key, stored[key].sha256).read_bytes() == data
        assert store.cache.size() <= 300_000
    first = stored["b/0.bin"].sha256
    assert not store.cache.path_for(first).exists()  # evicted long ago
    assert store.fetch("b/0.bin", first).read_bytes() == blobs["b/0.bin"]
    # least recently *used*: 5 and 7 are read again, so 6 goes first when 1 comes in
    for key in ("b/5.bin", "b/7.bin"):
        store.fetch(key, stored[key].sha256)
    store.fetch("b/1.bin", stored["b/1.bin"].sha256)
    held = {p.name for p in store.cache.objects.glob("*/*")}
    assert held == {stored[k].sha256 for k in ("b/5.bin", "b/7.bin", "b/1.bin")}


READERS = r"""
import hashlib, json, sys
from pathlib import Path
from app.storage import ReadCache, S3Store
from app.storage.s3 import s3_client

url, prefix, cache_dir, bound, blobs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), json.loads(sys.argv[5])
store = S3Store("trainserve-test", prefix, s3_client(endpoint_url=url), cache=ReadCache(Path(cache_dir), bound))
for _ in range(4):
    for key, sha256 in blobs.items():
        for _ in range(5):  # another process may evict the file between fetch and open: fetch again
            try:
                data = store.fetch(key, sha256).read_bytes()
                break
            except FileNotFoundError:
                continue
        assert hashlib.sha256(data).hexdigest() == sha256, key
print("READ ALL", flush=True)
"""


def test_processes_sharing_one_cache_read_only_whole_checked_files(
    moto: str, tmp_path: Path
) -> None:
    store = s3_store(moto, tmp_path / "cache", cache_bytes=250_000)
    blobs = {}
    for i in range(6):
        blobs[f"p/{i}.bin"] = store.put(
            f"p/{i}.bin", write(tmp_path / "blob", os.urandom(100_000))
        ).sha256
    env = base_env()
    env["PYTHONPATH"] = str(ROOT)
    args = [moto, store.prefix, str(store.cache.root), "250000", json.dumps(blobs)]
    procs = [
        Proc([sys.executable, "-c", READERS, *args], env, tmp_path / f"reader-{n}.log")
        for n in range(3)
    ]
    try:
        wait_until(lambda: not any(p.alive() for p in procs), 60, "the readers to finish")
    finally:
        for proc in procs:
            proc.stop()
    for proc in procs:
        assert proc.popen.returncode == 0 and "READ ALL" in proc.output(), proc.output()
    # each process evicts after its own admit: at most one file per process past the bound
    assert store.cache.size() <= 250_000 + 2 * 100_000
    assert list(store.cache.tmp.iterdir()) == []


def test_a_cached_copy_that_rotted_is_dropped_and_downloaded_again(
    moto: str, tmp_path: Path
) -> None:
    store = s3_store(moto, tmp_path / "cache")
    data = os.urandom(50_000)
    stored = store.put("r/x.bin", write(tmp_path / "x", data))
    cached = store.fetch("r/x.bin", stored.sha256)
    cached.write_bytes(b"rotten" + data[6:])
    again = store.fetch("r/x.bin", stored.sha256)
    assert again.read_bytes() == data


@pytest.fixture
def proxy(moto: str) -> Iterator[FaultProxy]:
    front = FaultProxy(int(moto.rsplit(":", 1)[1]))
    yield front
    front.close()


def test_transient_errors_are_retried(proxy: FaultProxy, tmp_path: Path) -> None:
    # 8 attempts: up to 3 faults a request, plus one on a pooled socket that fail() cut
    store = s3_store(
        proxy.url, tmp_path / "cache", max_attempts=8, connect_timeout_s=2, read_timeout_s=2
    )
    small, big = os.urandom(10_000), os.urandom(11 * MiB)
    write(tmp_path / "s", small)
    write(tmp_path / "b", big)
    stored: dict[str, Any] = {}
    steps = [  # (the faults the next connections meet, what then must still work)
        (["503", "drop"], lambda: stored.update(small=store.put("t/small.bin", tmp_path / "s"))),
        (
            ["drop", "503", "drop"],
            lambda: stored.update(big=store.put("t/big.bin", tmp_path / "b")),
        ),
        (["503", "hang", "drop"], lambda: store.fetch("t/small.bin", stored["small"].sha256)),
        (["drop", "503"], lambda: store.fetch("t/big.bin", stored["big"].sha256)),
    ]
    for faults, step in steps:
        proxy.fail(faults)
        step()
        assert proxy.faults == [], f"{faults}: not all met"
    assert len(proxy.served) == 10
    # the same faults without retries are failures: it is the retries that carried the above
    once = s3_store(proxy.url, tmp_path / "cache1", max_attempts=1)
    proxy.fail(["503"])
    with pytest.raises(StoreUnavailable, match="SlowDown"):
        once.put("t/once.bin", tmp_path / "s")
    assert store.fetch("t/small.bin", stored["small"].sha256).read_bytes() == small
    assert store.fetch("t/big.bin", stored["big"].sha256).read_bytes() == big


@pytest.mark.parametrize("endpoint", ["refused", "silent"])
def test_a_dead_endpoint_fails_clearly_within_a_bounded_time(
    endpoint: str, proxy: FaultProxy, tmp_path: Path
) -> None:
    if endpoint == "refused":
        url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    else:
        url = proxy.url
        proxy.fail(["hang"] * 50)
    store = s3_store(url, tmp_path / "cache", max_attempts=2, connect_timeout_s=1, read_timeout_s=1)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as failed:
        store.put("d/x.bin", write(tmp_path / "x", b"x"))
    with pytest.raises(StoreUnavailable):
        store.fetch("d/x.bin", sha(b"x"))
    assert time.monotonic() - started < 15
    assert url in str(failed.value) and "put of 'd/x.bin' failed after retries" in str(failed.value)
    started = time.monotonic()  # readiness asks once, with short timeouts, whatever the store's
    with pytest.raises(StoreUnavailable, match=store.where):
        store.probe()
    assert time.monotonic() - started < 5


def test_a_store_that_can_be_used_passes_its_probe(store: ArtifactStore, tmp_path: Path) -> None:
    store.probe()
    (tmp_path / "a-file").write_bytes(b"")
    with pytest.raises(StoreUnavailable, match="cannot be made"):
        LocalStore(tmp_path / "a-file" / "store").probe()


def test_a_completion_whose_answer_was_lost_still_counts(moto: str, tmp_path: Path) -> None:
    """S3 completed the upload, but the client never heard: the put checks what landed."""
    store = s3_store(moto, tmp_path / "cache")
    lost: list[str] = []

    def lose_the_answer(**_: Any) -> None:
        lost.append("CompleteMultipartUpload")
        raise ConnectionClosedError(endpoint_url=moto)

    store.client.meta.events.register("after-call.s3.CompleteMultipartUpload", lose_the_answer)
    data = os.urandom(11 * MiB)
    stored = store.put("c/model.safetensors", write(tmp_path / "m", data))
    assert lost == ["CompleteMultipartUpload"] and stored.sha256 == sha(data)
    store.client.meta.events.unregister("after-call.s3.CompleteMultipartUpload", lose_the_answer)
    assert store.fetch("c/model.safetensors", stored.sha256).read_bytes() == data
