"""The object store: S3 or anything that speaks its protocol (MinIO, Ceph, R2), through
boto3. Endpoint and credentials come from the usual AWS variables, which boto3 reads itself
(AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).

- Publish: S3 makes an object visible only once its PUT, or its multipart upload's
  completion, has succeeded; a put killed half-way leaves an incomplete upload that no GET
  sees (clean_incomplete aborts those, as a bucket lifecycle rule would).
- The sha256 goes into the object's metadata when the upload starts, so it is hashed in a
  pass before the upload; the upload's own bytes are checked by S3 (botocore's per-request
  checksums) and the file must not change in between.
- Retries: botocore's "standard" mode retries throttling, 5xx and dropped connections with
  jittered exponential backoff, per request (so per part). A completion whose answer was
  lost is found by a HEAD afterwards: the object is there with our sha256 and size.
- Reads download into the host's ReadCache, which checks the bytes before keeping them.
  Bytes already there are served without asking S3: the sha256 names them, not the key."""

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from app.core.files import sha256_file
from app.storage.base import ArtifactStore, Stored
from app.storage.cache import ReadCache
from app.storage.errors import ArtifactNotFound, InvalidKey, StoreError, StoreUnavailable
from app.storage.keys import validate_key

MiB = 1024 * 1024
MAX_S3_KEY_BYTES = 1024
_FAILURES = (BotoCoreError, ClientError, Boto3Error)


def s3_client(
    *,
    endpoint_url: str | None = None,
    max_attempts: int = 5,
    connect_timeout_s: float = 5.0,
    read_timeout_s: float = 60.0,
) -> Any:
    """A boto3 S3 client that retries transient errors ("standard" mode, max_attempts in
    all). Without endpoint_url, boto3 takes it from AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL."""
    config = Config(
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
    )
    # botocore reads AWS_DEFAULT_REGION; AWS_REGION is what most other AWS tools set.
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    session = boto3.session.Session()
    return session.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


class S3Store(ArtifactStore):
    def __init__(
        self,
        bucket: str,
        prefix: str,
        client: Any,
        *,
        cache: ReadCache,
        multipart_threshold: int = 64 * MiB,
        part_size: int = 16 * MiB,
        max_concurrency: int = 8,
    ) -> None:
        self.bucket, self.prefix = bucket, prefix.strip("/")
        if self.prefix:
            validate_key(self.prefix)
        self.client, self.cache = client, cache
        self._prober: Any = None  # probe()'s client, made on first use
        self.transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=part_size,
            max_concurrency=max_concurrency,
        )

    def __repr__(self) -> str:
        return f"S3Store({self.where!r}, endpoint={self.client.meta.endpoint_url!r})"

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def _object(self, key: str) -> str:
        name = f"{self.prefix}/{key}" if self.prefix else key
        if len(name.encode()) > MAX_S3_KEY_BYTES:
            raise InvalidKey(f"artifact key {key!r} with the store's prefix passes S3's limit")
        return name

    def _staging(self) -> Path:
        # The read cache's tmp/: a consumed put's file joins the cache by a rename.
        return self.cache.tmp

    def _put(self, key: str, local_path: Path, consume: bool) -> Stored:
        name, before = self._object(key), _file_state(local_path)
        sha256 = sha256_file(local_path)
        extra = {"Metadata": {"sha256": sha256}}
        try:
            self.client.upload_file(
                str(local_path), self.bucket, name, ExtraArgs=extra, Config=self.transfer
            )
        except _FAILURES as exc:
            if not self._landed(name, sha256, before[0]):
                raise self._failed("put", key, exc) from exc
        if _file_state(local_path) != before:
            raise StoreError(f"{local_path} changed while it was stored as '{key}'; put it again")
        if consume:  # this host reads it back (a resume, a warm start) without a download
            self.cache.adopt(local_path, sha256)
        return Stored(key, sha256, before[0])

    def _landed(self, name: str, sha256: str, size: int) -> bool:
        """After a failed upload: did it land anyway (the completion's answer was lost)?
        False when that cannot be told either; the upload's own error is what is raised."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=name)
        except _FAILURES:
            return False
        return head.get("Metadata", {}).get("sha256") == sha256 and head["ContentLength"] == size

    def _fetch(self, key: str, sha256: str) -> Path:
        hit = self.cache.get(sha256)
        if hit is not None:
            return hit
        name = self._object(key)
        with self.cache.download() as tmp:
            try:
                self.client.download_file(self.bucket, name, str(tmp), Config=self.transfer)
            except _FAILURES as exc:
                if _missing(exc):
                    raise ArtifactNotFound(key, self.where) from None
                raise self._failed("fetch", key, exc) from exc
            return self.cache.admit(tmp, key, sha256, self.where)

    def _exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._object(key))
        except _FAILURES as exc:
            if _missing(exc):
                return False
            raise self._failed("exists", key, exc) from exc
        return True

    def _delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._object(key))
        except _FAILURES as exc:
            raise self._failed("delete", key, exc) from exc

    def _delete_prefix(self, prefix: str) -> int:
        count = 0
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._object(prefix) + "/"
            )
            for page in pages:
                names = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if names:  # a page holds at most 1000 keys, as many as one DeleteObjects takes
                    self._delete_batch(names)
                    count += len(names)
        except _FAILURES as exc:
            raise self._failed("delete_prefix", prefix, exc) from exc
        return count

    def _delete_batch(self, names: list[dict[str, str]]) -> None:
        answer = self.client.delete_objects(
            Bucket=self.bucket, Delete={"Objects": names, "Quiet": True}
        )
        if answer.get("Errors"):
            raise StoreUnavailable(f"S3 refused to delete from {self.where}: {answer['Errors']}")

    def probe(self) -> None:
        # Its own client: one attempt and short timeouts, where reads and writes retry.
        if self._prober is None:
            self._prober = s3_client(
                endpoint_url=self.client.meta.endpoint_url,
                max_attempts=1,
                connect_timeout_s=2.0,
                read_timeout_s=2.0,
            )
        try:
            self._prober.head_bucket(Bucket=self.bucket)
        except _FAILURES as exc:
            raise StoreUnavailable(f"artifact store {self.where}: {exc}") from exc

    def clean_incomplete(self, older_than_s: float) -> int:
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
        count = 0
        try:
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=f"{self.prefix}/" if self.prefix else ""
            )
            for page in pages:
                for upload in page.get("Uploads", []):
                    if upload["Initiated"] < cutoff:
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                        count += 1
        except _FAILURES as exc:
            raise self._failed("clean_incomplete", self.prefix, exc) from exc
        return count

    def _failed(self, op: str, key: str, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(
            f"artifact store {self.where} ({self.client.meta.endpoint_url}): {op} of '{key}' "
            f"failed after retries: {exc}"
        )


def _missing(exc: BaseException) -> bool:
    if not isinstance(exc, ClientError):
        return False
    return exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


def _file_state(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns
