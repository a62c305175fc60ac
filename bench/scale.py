"""Scale, measured: tiny jobs a minute with 1 and 2 workers, predict req/s with 1 and 2 API
processes, and the artifact store's MB/s, each figure next to its baseline, in one run.

Sections (bench/README.md, "Scale", says more):
  jobs     tiny jobs (1 epoch of digits, the seed's mlp) sent with POST /v1/jobs to a real
           `trainserve api` + `trainserve worker` on a fresh PostgreSQL database and Redis
           queue (tests/support.py api_and_worker): a few one at a time (an idle worker's
           dispatch latency), then a burst with 1 worker (the baseline), then with 2
  predict  closed-loop one-row predict requests (bench/loadgen.py) on the version those jobs
           registered: `trainserve api --processes 1` (the baseline), then 2
  storage  put and fetch of 64 and 256 MiB files: shutil.copyfile + sha256 (the baseline),
           LocalStore, S3Store against moto's S3 server (fetch with a cold and a warm cache)

Run from the repository root: .venv/bin/python bench/scale.py [--jobs 8] [--sections ...]
PostgreSQL and Redis are the tests' (TRAINSERVE_TEST_PG_DSN, TRAINSERVE_TEST_REDIS_URL): the
bench makes its own database and queue there and removes them, with every process it started.
"""

import argparse
import asyncio
import json
import math
import os
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from app.core.files import sha256_file
from app.storage import LocalStore, ReadCache, S3Store
from app.storage.s3 import s3_client

# isort: split
# bench's own modules: the script's folder is first on sys.path (python bench/scale.py);
# common also puts the repository root on it, for the stack helpers of tests/
from common import seed_spec, tree_cpu_seconds
from loadgen import closed_loop

# isort: split
from tests.s3_support import moto_server
from tests.support import (
    BIN,
    Api,
    Proc,
    Served,
    api_and_worker,
    free_port,
    wait_http_ok,
    wait_until,
)

MODEL_NAME = "bench-scale"
VALIDATION_SPLIT = 0.1
MiB, MB = 1024 * 1024, 1_000_000
SECTIONS = ("jobs", "predict", "storage")
TERMINAL = ("succeeded", "failed", "cancelled")
ROW = [float(i % 17) for i in range(64)]  # one digits-like row: 8x8 pixels in 0..16


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "-"


def percentile(values: list[float], q: float) -> float:
    """q in percent; the inclusive method, so 2 values are enough."""
    if len(values) < 2:
        return values[0] if values else math.nan
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


# --- jobs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobTimes:
    """One finished job, from its row (GET /v1/jobs): the database's and the API's clocks."""

    created: datetime
    started: datetime
    finished: datetime
    loop_s: float  # the epoch loop alone: train rows / the job's progress.samples_per_s

    @property
    def window_s(self) -> float:
        """started_at → finished_at: claim, data, loop, checkpoint, bundle, register."""
        return (self.finished - self.started).total_seconds()

    @property
    def queued_s(self) -> float:
        return (self.started - self.created).total_seconds()


@dataclass(frozen=True)
class Run:
    label: str
    workers: int
    jobs: list[JobTimes]

    @property
    def wall_s(self) -> float:
        """The first job's created_at to the last one's finished_at."""
        first = min(j.created for j in self.jobs)
        return (max(j.finished for j in self.jobs) - first).total_seconds()

    @property
    def per_minute(self) -> float:
        return len(self.jobs) / self.wall_s * 60

    @property
    def slot_s(self) -> float:
        """Worker seconds per job: the wall time times the workers, shared out."""
        return self.wall_s * self.workers / len(self.jobs)

    def mean(self, value: Callable[[JobTimes], float]) -> float:
        return statistics.fmean(value(j) for j in self.jobs)


def print_jobs(runs: list[Run], base: Run) -> None:
    """base: the 1-worker burst, the baseline of the ratio column."""
    print(
        f"{'jobs (1 epoch of digits, mlp [128])':36} {'jobs':>4} {'wall s':>7} {'jobs/min':>8} "
        f"{'÷ 1 worker':>10} {'slot s/job':>10} {'loop s':>7} {'window s':>8} "
        f"{'overhead s':>10} {'÷ loop':>7} {'queue→start p50':>15} {'p95 s':>6}"
    )
    for r in runs:
        loop = r.mean(lambda j: j.loop_s)
        queued = [j.queued_s for j in r.jobs]
        print(
            f"{r.label:36} {len(r.jobs):4d} {r.wall_s:7.2f} {r.per_minute:8.1f} "
            f"{ratio(r.per_minute, base.per_minute):>10} {r.slot_s:10.3f} {loop:7.3f} "
            f"{r.mean(lambda j: j.window_s):8.3f} {r.slot_s - loop:10.3f} "
            f"{ratio(r.slot_s - loop, loop):>7} {percentile(queued, 50):15.3f} "
            f"{percentile(queued, 95):6.3f}"
        )


class Stack:
    """api_and_worker's stack, plus more workers and a restart of the API with N processes."""

    def __init__(self, served: Served, key: str, workdir: Path) -> None:
        self.served, self.key, self.workdir = served, key, workdir
        self.api = Api(served.url, key)
        self.url, self.api_proc = served.url, served.api
        self.workers = [served.worker]
        self.started: list[Proc] = []  # what this class started: stopped in close()

    def add_worker(self) -> None:
        log = self.workdir / f"worker-{len(self.workers) + 1}.log"
        worker = self._start([str(BIN), "worker"], log)
        self.workers.append(worker)
        wait_until(lambda: "ready." in worker.output() or not worker.alive(), 90, "a worker")
        if not worker.alive():
            raise RuntimeError(f"the worker exited:\n{worker.output()[-3000:]}")

    def stop_workers(self) -> None:
        """Before predict: nothing but the API on the CPUs."""
        for worker in self.workers:
            worker.stop()

    def restart_api(self, processes: int) -> None:
        self.api_proc.stop()
        port = free_port()
        args = [str(BIN), "api", "--port", str(port), "--processes", str(processes)]
        proc = self.api_proc = self._start(args, self.workdir / f"api-{processes}.log")
        self.url = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{self.url}/readyz", proc)
        wait_until(
            lambda: proc.output().count("Application startup complete") >= processes,
            60,
            f"{processes} API processes",
        )

    def _start(self, args: list[str], log: Path) -> Proc:
        proc = Proc(args, self.served.env, log)
        self.started.append(proc)
        return proc

    def close(self) -> None:
        self.api.http.close()
        for proc in self.started:
            proc.stop()


@contextmanager
def stack(workdir: Path) -> Iterator[Stack]:
    key = f"ts_{secrets.token_urlsafe(24)}"
    # A burst may hold more queued jobs than a project's default limit (50).
    with api_and_worker(workdir, key, max_active_jobs_per_project="10000") as served:
        running = Stack(served, key, workdir)
        try:
            yield running
        finally:
            running.close()


def run_jobs(api: Api, count: int, label: str, workers: int, one_at_a_time: bool) -> Run:
    spec = seed_spec(MODEL_NAME, 1, VALIDATION_SPLIT)
    ids = []
    for _ in range(count):
        ids.append(api.submit(spec)["id"])
        if one_at_a_time:
            api.wait_job(ids[-1])
    jobs = finished_jobs(api, ids)
    # Every version trains on the same split: the first one's lineage says how many rows.
    path = f"/v1/models/{MODEL_NAME}/versions/{jobs[0]['model_version']}"
    rows = int(api.http.get(path).raise_for_status().json()["dataset"]["train_rows"])
    return Run(label, workers, [job_times(job, rows) for job in jobs])


def finished_jobs(api: Api, ids: list[str], timeout: float = 600) -> list[dict[str, Any]]:
    """Poll the job list (one request, the newest 200 jobs) every 0.25 s until all end."""
    deadline, wanted = time.monotonic() + timeout, set(ids)
    while time.monotonic() < deadline:
        page = api.http.get("/v1/jobs", params={"limit": 200}).raise_for_status().json()
        done = {j["id"]: j for j in page["items"] if j["id"] in wanted and j["status"] in TERMINAL}
        if len(done) == len(wanted):
            failed = [j for j in done.values() if j["status"] != "succeeded"]
            if failed:
                raise RuntimeError(f"job {failed[0]['id']} {failed[0]['status']}: {failed[0]}")
            return [done[i] for i in ids]
        time.sleep(0.25)
    raise RuntimeError(f"{len(wanted)} jobs did not all end within {timeout:.0f} s")


def job_times(job: dict[str, Any], train_rows: int) -> JobTimes:
    return JobTimes(
        datetime.fromisoformat(job["created_at"]),
        datetime.fromisoformat(job["started_at"]),
        datetime.fromisoformat(job["finished_at"]),
        train_rows / float(job["progress"]["samples_per_s"]),  # 1 epoch
    )


def bench_jobs(running: Stack, args: argparse.Namespace) -> list[Run]:
    api = running.api
    run_jobs(api, 1, "warm-up", 1, one_at_a_time=True)  # the first job pays one-time costs
    runs = [
        run_jobs(api, args.sequential, "one at a time, 1 worker", 1, one_at_a_time=True),
        run_jobs(api, args.jobs, "burst, 1 worker (baseline)", 1, one_at_a_time=False),
    ]
    running.add_worker()
    runs.append(run_jobs(api, args.jobs, "burst, 2 workers", 2, one_at_a_time=False))
    return runs


# --- predict ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Predict:
    label: str
    latencies: list[float]
    wall_s: float
    errors: int
    server_cpu_s: float

    @property
    def req_s(self) -> float:
        return len(self.latencies) / self.wall_s

    def ms(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000


def measure_predict(running: Stack, label: str, args: argparse.Namespace) -> Predict:
    url = f"{running.url}/v1/models/{MODEL_NAME}/predict"
    headers = {"Authorization": f"Bearer {running.key}", "Content-Type": "application/json"}
    body = json.dumps({"inputs": [ROW]}).encode()
    pid = running.api_proc.popen.pid
    load = asyncio.run(
        closed_loop(
            url,
            headers,
            args.concurrency,
            body,
            args.warmup,
            args.seconds,
            "h11",
            lambda: tree_cpu_seconds(pid),
        )
    )
    if load.first_error:
        print(f"  {label}: {load.errors} errors, the first: {load.first_error}")
    return Predict(label, load.latencies, load.wall_s, load.errors, load.server_cpu_s)


def bench_predict(running: Stack, args: argparse.Namespace) -> list[Predict]:
    running.stop_workers()
    results = [measure_predict(running, "api --processes 1 (baseline)", args)]
    running.restart_api(2)
    results.append(measure_predict(running, "api --processes 2", args))
    return results


def print_predict(results: list[Predict], concurrency: int) -> None:
    base = results[0]
    print(
        f"{f'predict, 1 row a request, c={concurrency}':36} {'req/s':>7} {'÷ 1 proc':>8} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'p99 ÷ 1 proc':>12} {'errors':>6} {'srv cpu ms/req':>14}"
    )
    for r in results:
        cpu = r.server_cpu_s / len(r.latencies) * 1000 if r.latencies else math.nan
        print(
            f"{r.label:36} {r.req_s:7.0f} {ratio(r.req_s, base.req_s):>8} {r.ms(50):7.2f} "
            f"{r.ms(99):7.2f} {ratio(r.ms(99), base.ms(99)):>12} {r.errors:6d} {cpu:14.3f}"
        )


# --- storage ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transfer:
    store: str
    op: str
    size: int  # bytes
    seconds: list[float]  # one per repeat

    @property
    def mb_s(self) -> float:
        return self.size / statistics.median(self.seconds) / MB


def timed(action: Callable[[], object]) -> float:
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


def copy_and_hash(src: Path, dst: Path) -> None:
    """The baseline: a plain disk copy, then a hash pass over what was written."""
    shutil.copyfile(src, dst)
    sha256_file(dst)


def parts(size: int, store: S3Store) -> str:
    threshold, part = store.transfer.multipart_threshold, store.transfer.multipart_chunksize
    return f"{math.ceil(size / part)} parts" if size >= threshold else "one PUT"


def transfers(size: int, work: Path, s3: S3Store | None, repeats: int) -> list[Transfer]:
    """Every store's put and fetch of one file of `size` random bytes, `repeats` times each."""
    src, copy, key = work / f"src-{size}", work / "copy", "bench/blob"
    with open(src, "wb") as out:
        for _ in range(size // MiB):
            out.write(os.urandom(MiB))
    local = LocalStore(work / "local")
    sha256 = local.put(key, src).sha256  # untimed: it also makes the folders
    times: dict[tuple[str, str], list[float]] = {}

    def record(store: str, op: str, action: Callable[[], object]) -> None:
        times.setdefault((store, op), []).append(timed(action))

    for _ in range(repeats):
        record("copyfile + sha256", "copy", lambda: copy_and_hash(src, copy))
        copy.unlink()
        record("LocalStore", "put", lambda: local.put(key, src))
        # A fresh store, as another process sees the folder: no sha256 remembered (HashMemo).
        record("LocalStore", "fetch", lambda: LocalStore(local.root).fetch(key, sha256))
        if s3 is not None:
            record("S3Store (moto)", f"put, {parts(size, s3)}", lambda: s3.put(key, src))
            record("S3Store (moto)", "fetch, cold cache", lambda: s3.fetch(key, sha256))
            record("S3Store (moto)", "fetch, warm cache", lambda: warm_view(s3).fetch(key, sha256))
            shutil.rmtree(s3.cache.root)
            s3.delete(key)
    local.delete_prefix("bench")
    src.unlink()
    return [Transfer(store, op, size, seconds) for (store, op), seconds in times.items()]


def warm_view(s3: S3Store) -> S3Store:
    """The same bucket and cache folder as another process on this host sees them: the bytes
    cached, their sha256 not remembered yet (HashMemo), so the hit hashes them once."""
    return S3Store(
        s3.bucket, s3.prefix, s3.client, cache=ReadCache(s3.cache.root, s3.cache.max_bytes)
    )


@contextmanager
def s3_store(work: Path) -> Iterator[S3Store]:
    """moto's S3 server (tests/s3_support.py) and an S3Store on it, with the production
    transfer settings (multipart from 64 MiB, 16 MiB parts, 8 at once)."""
    none = str(work / "no-aws-config")
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_REGION="us-east-1",
        AWS_CONFIG_FILE=none,
        AWS_SHARED_CREDENTIALS_FILE=none,
    )
    with moto_server(work) as url:
        client = s3_client(endpoint_url=url)
        client.create_bucket(Bucket="bench")
        yield S3Store("bench", "scale", client, cache=ReadCache(work / "cache", 1024 * MiB))


def bench_storage(args: argparse.Namespace, work: Path) -> list[Transfer]:
    with ExitStack() as stack:
        s3 = None if args.no_s3 else stack.enter_context(s3_store(work))
        return [t for mib in args.sizes for t in transfers(mib * MiB, work, s3, args.repeats)]


def print_storage(rows: list[Transfer]) -> None:
    print(
        f"{'artifact store':36} {'MiB':>4} {'operation':22} {'MB/s':>7} {'÷ copy':>7} "
        f"{'median s':>8}  each run (s)"
    )
    base = {r.size: r.mb_s for r in rows if r.op == "copy"}
    for r in rows:
        print(
            f"{r.store:36} {r.size // MiB:4d} {r.op:22} {r.mb_s:7.0f} "
            f"{ratio(r.mb_s, base[r.size]):>7} {statistics.median(r.seconds):8.3f}  "
            + " ".join(f"{s:.3f}" for s in r.seconds)
        )


# --- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sections", type=lambda s: s.split(","), default=list(SECTIONS), help="jobs,predict,..."
    )
    parser.add_argument("--jobs", type=int, default=8, help="jobs in each burst")
    parser.add_argument("--sequential", type=int, default=3, help="jobs sent one at a time")
    parser.add_argument("--concurrency", type=int, default=32, help="predict requests in flight")
    parser.add_argument("--seconds", type=float, default=10, help="predict: measured s each")
    parser.add_argument("--warmup", type=float, default=2, help="predict: s before measuring")
    parser.add_argument(
        "--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[64, 256], help="MiB"
    )
    parser.add_argument("--repeats", type=int, default=3, help="storage: runs of each; median")
    # One torch thread, as the other benches: on a shared machine two OpenMP threads stall
    # whenever another process holds a core (bench/README.md, seed_job.py's Results).
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the stack")
    parser.add_argument("--no-s3", action="store_true", help="storage: leave out moto's S3")
    args = parser.parse_args(argv)
    if unknown := set(args.sections) - set(SECTIONS):
        parser.error(f"--sections: unknown {sorted(unknown)}; known: {', '.join(SECTIONS)}")
    counts = (args.jobs, args.sequential, args.concurrency, args.repeats, args.threads)
    if min(*counts, *args.sizes) < 1:
        parser.error("--jobs, --sequential, --concurrency, --repeats, --threads, --sizes: ≥ 1")
    if args.jobs > 200:
        parser.error("--jobs: at most 200 (the most one page of GET /v1/jobs lists)")
    return args


def main() -> None:
    args = parse_args()
    began = time.monotonic()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # base_env hands it to api and workers
    print(
        f"{datetime.now():%Y-%m-%d %H:%M}, cpus {os.cpu_count()}, threads {args.threads}, "
        f"load average {os.getloadavg()[0]:.2f}; sections {','.join(args.sections)}\n"
    )
    with tempfile.TemporaryDirectory(prefix="trainserve-scale-") as tmp:
        work = Path(tmp)
        runs, predicts, stores = [], [], []
        if {"jobs", "predict"} & set(args.sections):
            with stack(work) as running:
                if "jobs" in args.sections:
                    runs = bench_jobs(running, args)
                else:
                    run_jobs(running.api, 1, "the model", 1, one_at_a_time=True)
                if "predict" in args.sections:
                    predicts = bench_predict(running, args)
        if "storage" in args.sections:
            stores = bench_storage(args, work)
    if runs:
        print_jobs(runs, runs[1])
        print()
    if predicts:
        print_predict(predicts, args.concurrency)
        print()
    if stores:
        print_storage(stores)
        print()
    print(
        f"load average at the end {os.getloadavg()[0]:.2f}, {time.monotonic() - began:.0f} s in all"
    )


if __name__ == "__main__":
    main()
