"""A full disk, for real: `trainserve up` with its data dir on a small tmpfs of its own (a
private mount namespace, so nothing outside the test sees it), filled to the last byte while
a job trains. Writes answer 507 storage_full instead of 500, /readyz says the storage is low,
and every job's outcome stays true: it is retried, or it fails once saying why, and it
succeeds once space is freed.

Both ways a deployment puts its data: everything on one disk (the embedded default, whose
SQLite database fills up too), and PostgreSQL elsewhere with only the artifacts disk full."""

import errno
import os
import secrets
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.dataset_files import csv_bytes
from tests.support import (
    BIN,
    REDIS_URL,
    Api,
    Proc,
    base_env,
    free_port,
    pg_database,
    unique_name,
    wait_http_ok,
    wait_until,
)

TMPFS_MB = 64
FILLER = "filler.bin"


@dataclass
class FullStack:
    proc: Proc
    api: Api
    data_dir: Path  # as the service sees it, inside its mount namespace
    database_on_it: bool  # the embedded SQLite fills up with the rest

    @property
    def seen_from_here(self) -> Path:
        """The same folder, reached through the service's own root (its mount namespace)."""
        return Path(f"/proc/{self.proc.popen.pid}/root") / self.data_dir.relative_to("/")

    def fill(self) -> None:
        """Write until the device says ENOSPC: not one byte is left."""
        with open(self.seen_from_here / FILLER, "wb") as out:
            block = b"\0" * (1 << 20)
            try:
                while True:
                    out.write(block)
                    out.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
            try:
                while True:  # the last partial block, a byte at a time is too slow: halve
                    out.write(block[: max(1, len(block) // 64)])
                    out.flush()
            except OSError:
                pass

    def free(self) -> None:
        (self.seen_from_here / FILLER).unlink()


def start(tmp: Path, embedded: bool, **settings: str) -> FullStack:
    data_dir = tmp / "data"
    data_dir.mkdir()
    port = free_port()
    env = base_env(
        data_dir=str(data_dir),
        api_key=f"ts_{secrets.token_urlsafe(24)}",
        min_free_bytes=str(8 * 1024 * 1024),
        storage_retry_s="2",
        lease_s="3",
        heartbeat_s="0.5",
        reaper_interval_s="0.5",
        max_attempts="20",
        **settings,
    )
    if "TRAINSERVE_DATABASE_URL" in env:
        subprocess.run([str(BIN), "db", "upgrade"], env=env, check=True, capture_output=True)
    up = f"{shlex.quote(str(BIN))} up --port {port} --workers 1"
    mount = f"mount -t tmpfs -o size={TMPFS_MB}m trainserve-test {shlex.quote(str(data_dir))}"
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    args = ["unshare", *user, "--mount", "--propagation", "private", "sh", "-c"]
    proc = Proc([*args, f"{mount} && exec {up}"], env, tmp / "up.log")
    wait_http_ok(f"http://127.0.0.1:{port}/readyz", proc, timeout=90)
    api = Api(f"http://127.0.0.1:{port}", env["TRAINSERVE_API_KEY"])
    return FullStack(proc, api, data_dir, embedded)


@pytest.fixture(params=["embedded", "postgresql"])
def full_stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FullStack]:
    if request.param == "embedded":
        stack = start(tmp_path, embedded=True)
        try:
            yield stack
        finally:
            stack.proc.stop()
            print(stack.proc.output()[-20000:])
        return
    with pg_database() as url:
        queue = f"trainserve-test-{secrets.token_hex(4)}"
        stack = start(
            tmp_path, embedded=False, database_url=url, broker_url=REDIS_URL, queue_name=queue
        )
        try:
            yield stack
        finally:
            stack.proc.stop()
            print(stack.proc.output()[-20000:])


def job(name: str, epochs: int) -> dict[str, Any]:
    return {
        "model_name": name,
        "dataset": {"builtin": "digits"},
        "model": {"hidden": [64]},
        "training": {"epochs": epochs, "batch_size": 8},
    }


def test_a_full_disk_is_reported_and_loses_no_job(full_stack: FullStack) -> None:
    api = full_stack.api
    running = api.submit(job("through-the-full-disk", epochs=20))
    wait_until(lambda: api.job(running["id"])["progress"]["epoch"] >= 1, 120, "the job to run")
    full_stack.fill()

    ready = api.http.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["storage"] == "low", ready.text
    upload = api.http.post(
        "/v1/datasets",
        files={"file": ("d.csv", csv_bytes({"x": list(range(40)), "y": [0, 1] * 20}))},
        data={"name": unique_name("no-room"), "format": "csv", "target": "y"},
    )
    assert upload.status_code == 507 and upload.json()["error"]["code"] == "storage_full", (
        upload.text
    )
    submitted = api.http.post("/v1/jobs", json=job("submitted-when-full", epochs=1))
    assert submitted.status_code in (202, 507), submitted.text  # the database may have room
    # The running job meets the full disk at its next checkpoint. With the database elsewhere
    # it goes back to the queue saying why; with the database on the full disk nothing can be
    # written, so its lease lapses and it is taken up once space is back. Never failed.
    if not full_stack.database_on_it:
        wait_until(
            lambda: any(
                e["kind"] == "storage_full" and "no space left" in e["message"]
                for e in api.job(running["id"])["events"]
            ),
            120,
            "the job to be requeued as storage_full",
        )
    time.sleep(3)
    assert api.job(running["id"])["status"] in ("running", "queued"), api.job(running["id"])

    full_stack.free()
    wait_until(lambda: api.http.get("/readyz").status_code == 200, 30, "ready again")
    done = api.wait_job(running["id"], timeout=300)
    assert done["status"] == "succeeded" and done["attempt"] >= 2, done
    assert api.predict("through-the-full-disk", [[0.0] * 64]).status_code == 200
