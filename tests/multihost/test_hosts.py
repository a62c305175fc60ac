"""A job across hosts (issue 14, item 4). An API host and two worker hosts, each a network
namespace with its own hostname and DATA_DIR (the others' folders are empty there), share
nothing but PostgreSQL, Redis and the artifact store (moto's S3 server), which they reach
through forwarders on the bridge (tests/multihost/netns.py).

A job submitted over HTTP on the API host trains on a worker host; that host is SIGKILLed
(its whole process group) after its first checkpoint, and the job resumes on the other host
from the store's checkpoint; predict on the API host serves the registered version, loaded
from the store (the API host's DATA_DIR never had the file). Leases are short (3 s) so the
hand-over takes seconds; the whole test, setup included, runs within BUDGET_S."""

import hashlib
import os
import re
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import httpx
import psycopg
import pytest
import redis
from sqlalchemy.engine import make_url

from app.core.migrate import upgrade
from tests.multihost import netns
from tests.support import (
    BIN,
    PG_ADMIN_DSN,
    REDIS_URL,
    Api,
    Proc,
    base_env,
    held_out_digits,
    pg_database,
    wait_http_ok,
    wait_until,
)

BUDGET_S = 80.0
BUCKET = "trainserve-hosts"
API_PORT = 8000  # each host's own ports: nothing else listens in its namespace
MOTO_PORT = 5000
WORKERS = ("worker-a", "worker-b")
EPOCHS = 6
CLAIMED = re.compile(r"claimed by worker (?P<host>[^\s:]+):\d+ \(attempt (?P<attempt>\d+)\)")
S3_CREDENTIALS = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "region_name": "us-east-1",
}
AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",  # nothing of this machine's ~/.aws
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
}


class Deadline:
    """The test's one time budget: every wait takes at most what is left of it."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds
        self.seconds = seconds

    def left(self, at_most: float) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise AssertionError(f"the test's budget of {self.seconds:.0f} s is spent")
        return min(at_most, left)


@dataclass
class Cluster:
    hosts: dict[str, netns.Host]
    procs: dict[str, Proc]  # by host name
    api: Api
    s3: Any  # a boto3 client on the store's endpoint: the test's own view of the bucket
    prefix: str
    deadline: Deadline

    def running_on(self, job_id: str) -> str | None:
        """The host whose worker trains the job now (GET /v1/workers)."""
        page = self.api.http.get("/v1/workers", params={"limit": 100})
        assert page.status_code == 200, page.text
        hosts = [w["hostname"] for w in page.json()["items"] if job_id in w["running"]]
        return hosts[0] if hosts else None

    def store_objects(self) -> dict[str, bytes]:
        listed = self.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{self.prefix}/")
        return {
            obj["Key"]: self.s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()
            for obj in listed.get("Contents", [])
        }


def host_logs(procs: dict[str, Proc]) -> str:
    return "\n".join(
        f"--- {name} (exit {proc.popen.poll()}) ---\n{proc.output()[-4000:]}"
        for name, proc in procs.items()
    )


def host_env(host: netns.Host, shared: dict[str, str], s3: str) -> dict[str, str]:
    """A host's environment: its own DATA_DIR, the shared settings, the store's endpoint."""
    env = base_env(data_dir=str(host.folder / "data"), **shared)
    if "PYTHONPATH" in env:  # a host runs in its own folder: the code's path must not move
        paths = env["PYTHONPATH"].split(os.pathsep)
        env["PYTHONPATH"] = os.pathsep.join(str(Path(p).resolve()) for p in paths if p)
    for name in list(env):  # nothing of this machine's AWS profile or proxies
        if name.startswith("AWS_") or name.lower().endswith("_proxy"):
            del env[name]
    return env | AWS | {"AWS_ENDPOINT_URL": s3}


def forwarded_urls(net: netns.Network, db_url: str, store: str) -> dict[str, str]:
    """The database, broker and S3 URLs as a host sees them: via forwarders on the gateway."""
    db, broker, s3 = make_url(db_url), urlsplit(REDIS_URL), urlsplit(store)
    db_port = net.forward((db.host or "127.0.0.1", db.port or 5432)).port
    broker_port = net.forward((broker.hostname or "127.0.0.1", broker.port or 6379)).port
    s3_port = net.forward((s3.hostname or "127.0.0.1", s3.port or 80)).port
    credentials = broker.netloc.rpartition("@")[0]
    return {
        "database": db.set(host=net.gateway, port=db_port).render_as_string(hide_password=False),
        "broker": broker._replace(
            netloc=f"{credentials + '@' if credentials else ''}{net.gateway}:{broker_port}"
        ).geturl(),
        "s3": f"http://{net.gateway}:{s3_port}",
    }


def start(host: netns.Host, args: list[str], env: dict[str, str], logs: Path) -> Proc:
    return Proc(host.command(args), env, logs / f"{host.name}.log", cwd=host.folder)


def start_store(host: netns.Host, logs: Path) -> Proc:
    """moto's S3 server on the store host (a killed run's is killed with its namespace)."""
    args = [sys.executable, "-m", "moto.server", "-H", host.address, "-p", str(MOTO_PORT)]
    return start(host, args, base_env(), logs)


def answers(url: str, proc: Proc) -> bool:
    assert proc.alive(), f"moto exited:\n{proc.output()[-2000:]}"
    try:
        return httpx.get(url, timeout=1).status_code < 500
    except httpx.TransportError:
        return False


def remove_stale_runs() -> None:
    """The databases and queue keys of runs of this test whose process is gone (the network
    removes its own, netns.network)."""
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        names = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'ts_hosts_%'")
        for (name,) in names.fetchall():
            if netns.stale(name):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    broker = redis.Redis.from_url(REDIS_URL)
    for key in broker.scan_iter("*trainserve-hosts-*"):
        if netns.stale(key.decode(errors="replace")):
            broker.delete(key)


def clear_queue(queue: str) -> None:
    broker = redis.Redis.from_url(REDIS_URL)
    for key in broker.scan_iter(f"*{queue}*"):
        broker.delete(key)


def empty_bucket(s3: Any) -> None:
    for obj in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        s3.delete_object(Bucket=BUCKET, Key=obj["Key"])
    s3.delete_bucket(Bucket=BUCKET)


def stop_all(procs: dict[str, Proc]) -> None:
    """SIGTERM to every host's process group at once, then SIGKILL to what is left after 5 s."""
    for proc in procs.values():
        if proc.alive():
            os.killpg(proc.popen.pid, signal.SIGTERM)
    end = time.monotonic() + 5
    for proc in procs.values():
        proc.stop(timeout=max(0.1, end - time.monotonic()))


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    if reason := netns.unavailable():
        pytest.skip(reason)
    deadline = Deadline(BUDGET_S)
    procs: dict[str, Proc] = {}
    request.node.stash[netns.HOST_LOGS] = lambda: host_logs(procs)
    logs, folders = tmp_path / "logs", tmp_path / "hosts"
    logs.mkdir()
    remove_stale_runs()
    with ExitStack() as cleanup:  # undone in reverse: bucket, processes, network, queue, db
        tag = netns.new_tag()
        cleanup.callback(shutil.rmtree, folders, ignore_errors=True)
        db_url = cleanup.enter_context(pg_database(f"ts_hosts_{netns.PREFIX}{tag}"))
        queue, prefix = f"trainserve-hosts-{netns.PREFIX}{tag}", f"run-{secrets.token_hex(4)}"
        cleanup.callback(clear_queue, queue)
        net = cleanup.enter_context(netns.network(tag))
        cleanup.callback(stop_all, procs)
        hosts = {name: net.add_host(name, folders / name) for name in ("store", "api", *WORKERS)}
        net.check_isolation()
        procs["store"] = start_store(hosts["store"], logs)
        upgrade(db_url)  # while moto starts

        store = f"http://{hosts['store'].address}:{MOTO_PORT}"
        wait_until(lambda: answers(store, procs["store"]), deadline.left(30), "moto to answer")
        s3 = boto3.client("s3", endpoint_url=store, **S3_CREDENTIALS)
        s3.create_bucket(Bucket=BUCKET)
        cleanup.callback(empty_bucket, s3)

        urls = forwarded_urls(net, db_url, store)
        key = f"ts_{secrets.token_urlsafe(24)}"
        shared = {
            "database_url": urls["database"],
            "broker_url": urls["broker"],
            "queue_name": queue,
            "api_key": key,
            "artifact_store": f"s3://{BUCKET}/{prefix}",
            "lease_s": "3",
            "heartbeat_s": "0.5",
            "reaper_interval_s": "1",
            "requeue_after_s": "4",
        }
        envs = {name: host_env(hosts[name], shared, urls["s3"]) for name in ("api", *WORKERS)}
        api_args = ["api", "--host", hosts["api"].address, "--port", str(API_PORT)]
        procs["api"] = start(hosts["api"], [str(BIN), *api_args], envs["api"], logs)
        for name in WORKERS:
            procs[name] = start(hosts[name], [str(BIN), "worker"], envs[name], logs)

        url = f"http://{hosts['api'].address}:{API_PORT}"
        api = Api(url, key)
        wait_http_ok(f"{url}/readyz", procs["api"], timeout=deadline.left(60))
        wait_until(
            lambda: live_hosts(api, procs) >= set(WORKERS),
            deadline.left(60),
            "both worker hosts live on GET /v1/workers",
            interval=0.5,
        )
        yield Cluster(hosts, procs, api, s3, prefix, deadline)


def live_hosts(api: Api, procs: dict[str, Proc]) -> set[str]:
    for name, proc in procs.items():
        assert proc.alive(), f"{name} exited early"
    page = api.http.get("/v1/workers", params={"limit": 100})
    assert page.status_code == 200, page.text
    return {w["hostname"] for w in page.json()["items"] if w["state"] == "live"}


def spec(name: str) -> dict[str, Any]:
    """Digits one row per step: about a second an epoch here, so a kill lands mid-run."""
    return {
        "model_name": name,
        "dataset": {"builtin": "digits"},
        "model": {"hidden": [32]},
        "training": {
            "epochs": EPOCHS,
            "batch_size": 1,
            "optimizer": {"name": "sgd", "lr": 0.001, "momentum": 0.9},
        },
    }


def claims(job: dict[str, Any]) -> dict[int, str]:
    """The host that claimed each attempt, from the job's claimed events."""
    found = (CLAIMED.search(e["message"]) for e in job["events"] if e["kind"] == "claimed")
    return {int(m["attempt"]): m["host"] for m in found if m}


def history(job: dict[str, Any]) -> str:
    lines = [f"  {e['attempt']} {e['kind']}: {e['message']}" for e in job["events"]]
    return f"job {job['id']} ({job['status']}):\n" + "\n".join(lines)


def sha256s(objects: dict[str, bytes]) -> set[str]:
    return {hashlib.sha256(data).hexdigest() for data in objects.values()}


def test_a_job_moves_hosts_on_a_kill_and_the_api_host_serves_it_from_the_store(
    cluster: Cluster,
) -> None:
    api, deadline = cluster.api, cluster.deadline
    job_id = api.submit(spec("across-hosts"))["id"]

    # 1. it trains on a worker host
    def checkpointed_on() -> tuple[str, dict[str, Any]] | None:
        job = api.job(job_id)
        assert job["status"] in ("queued", "running"), history(job)
        host = cluster.running_on(job_id) if job["progress"]["epoch"] >= 1 else None
        return (host, job["progress"]) if host else None

    first, progress = wait_until(checkpointed_on, deadline.left(40), "a first checkpoint", 0.1)
    assert first in WORKERS, first

    # 2. SIGKILL that host's worker (its process group) mid-run, after a checkpoint ...
    victim = cluster.procs[first]
    os.killpg(victim.popen.pid, signal.SIGKILL)
    victim.popen.wait(10)
    after_kill = api.job(job_id)
    assert after_kill["status"] == "running", f"it ended before the kill: {history(after_kill)}"
    ours = [key for key in cluster.store_objects() if job_id in key]
    assert ours, (
        f"no object of job {job_id} in the store after its checkpoint of epoch "
        f"{progress['epoch']} on {first}: its checkpoints did not go to TRAINSERVE_ARTIFACT_STORE"
    )

    # ... and the job resumes on the other host from the store's checkpoint
    done = api.wait_job(job_id, timeout=deadline.left(60))
    (other,) = set(WORKERS) - {first}
    assert done["status"] == "succeeded" and done["attempt"] == 2, history(done)
    assert claims(done) == {1: first, 2: other}, history(done)
    resumed = [e for e in done["events"] if e["kind"] == "resumed"]
    assert [e["attempt"] for e in resumed] == [2], history(done)
    epoch = int(resumed[0]["message"].rsplit(" ", 1)[1])
    assert progress["epoch"] <= epoch < EPOCHS, history(done)

    # 3. predict on the API host serves that version, loaded from the store
    version = done["model_version"]
    held = [p for p in cluster.hosts["api"].folder.rglob("*") if job_id in str(p)]
    assert held == [], f"the API host's DATA_DIR has files of the job before predict: {held}"
    lineage = api.http.get(f"/v1/models/across-hosts/versions/{version}")
    assert lineage.status_code == 200, lineage.text
    assert lineage.json()["checkpoint_sha256"] in sha256s(cluster.store_objects()), (
        f"the bundle of version {version} (sha256 {lineage.json()['checkpoint_sha256']}) is not "
        f"in the store: {sorted(cluster.store_objects())}"
    )
    rows, labels = held_out_digits()
    served = api.predict("across-hosts", rows)
    assert served.status_code == 200, served.text
    body = served.json()
    assert body["model_version"] == version
    accuracy = sum(p == y for p, y in zip(body["predictions"], labels, strict=True)) / len(labels)
    assert accuracy >= 0.8, accuracy
