"""Predict throughput and latency: trainserve next to a bare endpoint, TorchServe, LitServe.

Closed-loop HTTP load (asyncio, HTTP/1.1 keep-alive: h11, or httpx with --client httpx) with
JSON requests, in three scenarios: one-row requests at concurrency 1 and 32, and 64-row
requests at concurrency 1.
Every server serves the same MLP 784-128-10 (fixed random weights) on one core; the load
generator runs on the other. Rows of the table it prints (bench/README.md says more):
  raw forward   the model's forward pass in this process, under inference_mode: the limit
  noop          bench/predict_assets/noop_server.py: no model, a fixed answer; the load
                generator's own floor (its latency, its most requests/s)
  bare          bench/predict_assets/bare_server.py: FastAPI + uvicorn, one async route, one
                forward pass per request; the baseline of the "÷ bare" columns
  trainserve    `trainserve up --workers 0` with the model registered (no training), once
                per --batch-rows value (TRAINSERVE_BATCH_MAX_ROWS)
  torchserve    TorchServe 0.12, bench/predict_assets/torchserve_handler.py, batchSize 32
  litserve      LitServe, bench/predict_assets/litserve_server.py, max_batch_size 32

Run from the repository root: .venv/bin/python bench/predict.py [--seconds 15] [--warmup 3]
TorchServe and LitServe run from their own venv (--peers-venv; bench/README.md installs it);
without it they are skipped, with a note.
"""

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import httpx
import torch
from torch import nn

from app.core import db
from app.core.config import Settings, get_settings
from app.core.migrate import upgrade
from app.ml.bundle import ModelBundle
from app.ml.preprocessing import Preprocessor, Standardizer
from app.ml.zoo import build_mlp
from app.models import Job, JobStatus
from app.services import registry

# isort: split
# bench's own modules: the script's folder is first on sys.path (python bench/predict.py)
from common import free_port, server_env, start_group, stop_group, tree_cpu_seconds
from loadgen import CLIENTS, closed_loop

ROOT = Path(__file__).resolve().parents[1]
ASSETS = Path(__file__).resolve().parent / "predict_assets"
FEATURES, HIDDEN, CLASSES, SEED = 784, 128, 10, 0
MODEL_NAME = "bench-mlp"
PEERS = ("torchserve", "litserve")
SERVERS = ("noop", "bare", "trainserve", *PEERS)
BARE = "bare endpoint"  # its rows' server name: the baseline of the "÷ bare" columns


@dataclass(frozen=True)
class Scenario:
    key: str  # what --scenarios names it by
    name: str
    rows: int  # rows per request
    concurrency: int  # requests in flight: each worker sends its next when one answers

    @property
    def raw_rows(self) -> int:
        """The batch the raw forward runs: what `concurrency` one-row requests batch up to."""
        return self.rows * self.concurrency


SCENARIOS = (
    Scenario("c1", "1 row, c=1", 1, 1),
    Scenario("c32", "1 row, c=32", 1, 32),
    Scenario("rows64", "64 rows, c=1", 64, 1),
)


@dataclass
class Result:
    server: str
    scenario: Scenario
    latencies: list[float]  # seconds, successful requests only
    wall_s: float
    requests_per_call: int = 1  # the raw forward: one call serves `concurrency` requests
    errors: int = 0
    first_error: str = ""
    server_cpu_s: float | None = None  # the server's process tree, over the window
    client_cpu_s: float | None = None  # this process, over the window

    @property
    def req_s(self) -> float:
        return len(self.latencies) * self.requests_per_call / self.wall_s

    @property
    def rows_s(self) -> float:
        return self.req_s * self.scenario.rows

    @property
    def server_ms_per_req(self) -> float | None:
        if self.server_cpu_s is None or not self.latencies:
            return None
        return self.server_cpu_s / len(self.latencies) * 1000

    @property
    def client_cpu_pct(self) -> float | None:
        return None if self.client_cpu_s is None else self.client_cpu_s / self.wall_s * 100

    def percentile_ms(self, q: float) -> float:
        """q in percent, to a tenth: 50, 99, 99.9."""
        if len(self.latencies) < 2:
            return self.latencies[0] * 1000 if self.latencies else float("nan")
        return self._permille[round(q * 10) - 1] * 1000

    @cached_property
    def _permille(self) -> list[float]:
        """The 999 cut points between 1000 equal groups of the latencies (sorted once)."""
        return statistics.quantiles(self.latencies, n=1000, method="inclusive")


# --- the model, its requests, and the raw forward ----------------------------------------------


def make_model() -> nn.Module:
    """The service's own mlp builder (Linear → ReLU → Linear), fixed random weights."""
    torch.manual_seed(SEED)
    return build_mlp([FEATURES], CLASSES, hidden=[HIDDEN]).eval()


def make_rows(count: int) -> list[list[float]]:
    """Pixel-like features in [0, 1), 4 decimals, seeded: the same JSON for every server."""
    generator = torch.Generator().manual_seed(SEED + count)
    # float64, so that each value prints as its 4 decimals (~6 kB of JSON a row)
    x = torch.rand(count, FEATURES, generator=generator, dtype=torch.float64)
    return x.round(decimals=4).tolist()


def raw_forward(model: nn.Module, scenario: Scenario, seconds: float, core: int) -> Result:
    """The forward pass alone, pinned to the server core, on a batch of scenario.raw_rows."""
    os.sched_setaffinity(0, {core})
    x = torch.tensor(make_rows(scenario.raw_rows), dtype=torch.float32)
    latencies: list[float] = []
    with torch.inference_mode():
        for phase_s, keep in ((min(1.0, seconds), False), (seconds, True)):
            stop_at = time.perf_counter() + phase_s
            while (began := time.perf_counter()) < stop_at:
                model(x)
                if keep:
                    latencies.append(time.perf_counter() - began)
    return Result("raw forward (limit)", scenario, latencies, sum(latencies), scenario.concurrency)


# --- servers ----------------------------------------------------------------------------------


class Unavailable(RuntimeError):
    """A server that could not be started or did not answer: its rows are left out."""


class Proc:
    """A server in its own process group, pinned to one core (children inherit it)."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, core: int) -> None:
        self.log_path = cwd / "server.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        # taskset execs: popen.pid is the server
        self.popen = start_group(["taskset", "-c", str(core), *args], env, self._log, cwd)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def cpu_seconds(self) -> float:
        """user + system CPU of the process and all its descendants (threads included)."""
        return tree_cpu_seconds(self.popen.pid)

    def stop(self) -> None:
        stop_group(self.popen, 20)
        # Forked workers can outlive their leader for a moment: leave none behind.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self._log.close()


@dataclass
class Target:
    name: str
    proc: Proc
    url: str  # the predict endpoint
    headers: dict[str, str] = field(default_factory=dict)  # with Content-Type: the JSON body

    def __post_init__(self) -> None:
        self.headers = {"Content-Type": "application/json", **self.headers}

    def wait_ready(self, body: bytes, timeout: float = 180) -> None:
        """Until a predict answers 200: the model is loaded, not only the port open."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.proc.alive():
                raise Unavailable(f"{self.name} exited early:\n{self.proc.log_tail()}")
            try:
                response = httpx.post(self.url, content=body, headers=self.headers, timeout=10)
                if response.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise Unavailable(f"{self.name}: no 200 within {timeout:.0f} s:\n{self.proc.log_tail()}")


@dataclass(frozen=True)
class Setup:
    work: Path  # the temp dir: one folder per server
    weights: Path  # the model's state_dict, torch.save'd, for the peers
    model: nn.Module
    peers_venv: Path
    threads: int
    core: int  # the server core
    batch_size: int  # the peers' batch (requests)
    batch_delay_ms: float  # the peers' wait for a batch to fill


def start_trainserve(setup: Setup, batch_rows: int) -> Target:
    """One trainserve per batch size: its own data dir, TRAINSERVE_BATCH_MAX_ROWS set."""
    data_dir = setup.work / f"trainserve-{batch_rows}" / "data"
    register_model(data_dir, setup.model)
    key = "ts_" + secrets.token_urlsafe(32)
    port = free_port()
    # `python -m app.cli up` is `trainserve up` for the code tree this script sits in.
    args = [sys.executable, "-m", "app.cli", "up", "--data-dir", str(data_dir)]
    args += ["--port", str(port), "--workers", "0"]
    env = server_env(
        setup.threads,
        TRAINSERVE_API_KEY=key,
        TRAINSERVE_BATCH_MAX_ROWS=str(batch_rows),
        PYTHONPATH=str(ROOT),
    )
    proc = Proc(args, env, data_dir.parent, setup.core)
    url = f"http://127.0.0.1:{port}/v1/models/{MODEL_NAME}/predict"
    name = f"trainserve rows={batch_rows}"
    return Target(name, proc, url, {"Authorization": f"Bearer {key}"})


def register_model(data_dir: Path, model: nn.Module) -> None:
    """The model as a succeeded job would have left it: bundle file, Job row, version 1."""
    os.environ["TRAINSERVE_DATA_DIR"] = str(data_dir)
    for cached in (get_settings, db.get_engine, db.get_sessionmaker):
        cached.cache_clear()
    settings = get_settings()
    settings.ensure_dirs()
    upgrade(settings.db_url)
    scaler = Standardizer(torch.zeros(FEATURES), torch.ones(FEATURES))  # x unchanged
    preprocessor = Preprocessor("tabular", [FEATURES], x_scaler=scaler)
    options = {"hidden": [HIDDEN], "dropout": 0.0}
    classes = list(range(CLASSES))
    bundle = ModelBundle(
        "mlp", options, "classification", CLASSES, classes, preprocessor, None, model
    )
    spec = {"model_name": MODEL_NAME, "dataset": {"builtin": "none"}, "model": {"arch": "mlp"}}
    with db.session_scope() as session:
        job = Job(model_name=MODEL_NAME, spec=spec, status=JobStatus.succeeded)
        session.add(job)
        session.flush()
        rel = f"jobs/{job.id}/attempt-1/model.safetensors"
        sha256 = bundle.save(settings.artifacts_dir / rel)
        registry.register_version(
            session,
            model_name=MODEL_NAME,
            project="default",
            job_id=job.id,
            task="classification",
            spec=spec,
            dataset={"builtin": "none"},
            metrics={},
            classes=classes,
            input_shape=[FEATURES],
            checkpoint_path=rel,
            checkpoint_sha256=sha256,
        )
    db.get_engine().dispose()


def peer_bin(setup: Setup, name: str) -> str:
    path = setup.peers_venv / "bin" / name
    if not path.exists():
        raise Unavailable(f"{path} not found: install the peers' venv (bench/README.md)")
    return str(path)


def start_torchserve(setup: Setup) -> Target:
    folder = setup.work / "torchserve"
    store = folder / "store"
    store.mkdir(parents=True)
    archive = [peer_bin(setup, "torch-model-archiver"), "--model-name", "mlp"]
    archive += ["--version", "1.0", "--serialized-file", str(setup.weights)]
    archive += ["--handler", str(ASSETS / "torchserve_handler.py"), "--export-path", str(store)]
    done = subprocess.run(archive, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise Unavailable(f"torch-model-archiver failed:\n{done.stderr[-2000:]}")
    port = free_port()
    model = {"marName": "mlp.mar", "minWorkers": 1, "maxWorkers": 1, "defaultVersion": True}
    model |= {"batchSize": setup.batch_size, "maxBatchDelay": round(setup.batch_delay_ms)}
    config = [
        f"inference_address=http://127.0.0.1:{port}",
        f"management_address=http://127.0.0.1:{free_port()}",
        f"metrics_address=http://127.0.0.1:{free_port()}",
        "load_models=mlp.mar",
        "default_workers_per_model=1",
        "disable_token_authorization=true",
        "disable_system_metrics=true",
        f"vmargs=-Djava.io.tmpdir={folder}",  # its worker sockets, not the machine's /tmp
        "models=" + json.dumps({"mlp": {"1.0": model}}),
    ]
    (folder / "config.properties").write_text("\n".join(config) + "\n")
    args = [peer_bin(setup, "torchserve"), "--start", "--foreground", "--ncs"]
    args += ["--model-store", str(store), "--ts-config", str(folder / "config.properties")]
    args += ["--disable-token-auth"]
    logs = str(folder / "logs")
    # TMPDIR: its pid file goes there, not into the machine's shared /tmp.
    env = server_env(setup.threads, TMPDIR=str(folder), LOG_LOCATION=logs, METRICS_LOCATION=logs)
    proc = Proc(args, env, folder, setup.core)
    return Target("torchserve", proc, f"http://127.0.0.1:{port}/predictions/mlp")


def start_litserve(setup: Setup) -> Target:
    folder = setup.work / "litserve"
    folder.mkdir()
    port = free_port()
    args = [peer_bin(setup, "python"), str(ASSETS / "litserve_server.py")]
    args += ["--weights", str(setup.weights), "--port", str(port)]
    args += ["--max-batch-size", str(setup.batch_size)]
    args += ["--batch-timeout", str(setup.batch_delay_ms / 1000)]
    proc = Proc(args, server_env(setup.threads), folder, setup.core)
    return Target("litserve", proc, f"http://127.0.0.1:{port}/predict")


def start_bare(setup: Setup) -> Target:
    folder = setup.work / "bare"
    folder.mkdir()
    port = free_port()
    args = [sys.executable, str(ASSETS / "bare_server.py")]
    args += ["--weights", str(setup.weights), "--port", str(port)]
    proc = Proc(args, server_env(setup.threads), folder, setup.core)
    return Target(BARE, proc, f"http://127.0.0.1:{port}/predict")


def start_noop(setup: Setup) -> Target:
    folder = setup.work / "noop"
    folder.mkdir()
    port = free_port()
    args = [sys.executable, str(ASSETS / "noop_server.py"), str(port)]
    return Target(
        "noop (client floor)",
        Proc(args, server_env(setup.threads), folder, setup.core),
        f"http://127.0.0.1:{port}/",
    )


LAUNCHERS: dict[str, Callable[[Setup], Target]] = {
    "noop": start_noop,
    "bare": start_bare,
    "torchserve": start_torchserve,
    "litserve": start_litserve,
}


def launchers(
    servers: list[str], batch_rows: list[int]
) -> list[tuple[str, Callable[[Setup], Target]]]:
    """(label, launcher) per server to run, in order: trainserve once per batch size."""
    out: list[tuple[str, Callable[[Setup], Target]]] = []
    for name in servers:
        if name == "trainserve":
            out += [
                (f"trainserve rows={n}", partial(start_trainserve, batch_rows=n))
                for n in batch_rows
            ]
        else:
            out.append((name, LAUNCHERS[name]))
    return out


def check_answers(target: Target, model: nn.Module) -> None:
    """The server's answer for 3 rows is the raw model's: same labels, same probabilities."""
    rows = make_rows(3)
    response = httpx.post(target.url, json={"inputs": rows}, headers=target.headers, timeout=30)
    if response.status_code != 200:
        raise Unavailable(f"{target.name}: {response.status_code} {response.text[:500]}")
    body = response.json()
    with torch.inference_mode():
        probs = torch.softmax(model(torch.tensor(rows, dtype=torch.float32)), dim=1)
    served = torch.tensor(body["probabilities"])
    if body["predictions"] != probs.argmax(dim=1).tolist() or not torch.allclose(
        served, probs, atol=1e-5
    ):
        raise Unavailable(f"{target.name} answers differently from the raw forward: {body}")


# --- the benchmark ----------------------------------------------------------------------------


def bench_server(
    launch: Callable[[Setup], Target],
    setup: Setup,
    scenarios: list[Scenario],
    args: argparse.Namespace,
) -> list[Result]:
    """Start one server, check its answers, run every scenario against it, stop it."""
    bodies = {s.rows: json.dumps({"inputs": make_rows(s.rows)}).encode() for s in SCENARIOS}
    began = time.monotonic()
    target = launch(setup)
    try:
        target.wait_ready(bodies[1])
        print(f"{target.name}: ready in {time.monotonic() - began:.1f} s", flush=True)
        if launch is not start_noop:
            check_answers(target, setup.model)
        results = []
        for scenario in scenarios:
            results.append(asyncio.run(measure(target, scenario, bodies[scenario.rows], args)))
            print(f"  {scenario.name}: {results[-1].req_s:.0f} req/s", flush=True)
        return results
    finally:
        target.proc.stop()


async def measure(
    target: Target, scenario: Scenario, body: bytes, args: argparse.Namespace
) -> Result:
    """One scenario against a started server: loadgen's warm-up, then its measured window."""
    load = await closed_loop(
        target.url,
        target.headers,
        scenario.concurrency,
        body,
        args.warmup,
        args.seconds,
        args.client,
        target.proc.cpu_seconds,
    )
    return Result(
        target.name,
        scenario,
        load.latencies,
        load.wall_s,
        errors=load.errors,
        first_error=load.first_error,
        server_cpu_s=load.server_cpu_s,
        client_cpu_s=load.client_cpu_s,
    )


# --- report -----------------------------------------------------------------------------------


def best_peer(results: list[Result], scenario: Scenario) -> tuple[Result | None, Result | None]:
    """The peer row with the highest req/s, and the one with the lowest p50, in a scenario."""
    peers = [r for r in results if r.scenario == scenario and r.server in PEERS and r.latencies]
    if not peers:
        return None, None
    return max(peers, key=lambda r: r.req_s), min(peers, key=lambda r: r.percentile_ms(50))


def bare_row(results: list[Result], scenario: Scenario) -> Result | None:
    return next((r for r in results if r.scenario == scenario and r.server == BARE), None)


def print_table(results: list[Result]) -> None:
    head = f"{'server':22} {'scenario':13} {'req/s':>7} {'rows/s':>8} {'p50 ms':>7} "
    head += f"{'p99 ms':>7} {'p99.9 ms':>8} {'errors':>6} {'srv cpu ms/req':>14} {'gen cpu':>7} "
    head += f"{'req/s ÷ bare':>12} {'p99 ÷ bare':>10} "
    print(head + f"{'req/s ÷ best peer':>17} {'p50 ÷ best peer':>15}")
    for scenario in SCENARIOS:
        fastest, quickest = best_peer(results, scenario)
        bare = bare_row(results, scenario)
        for r in (r for r in results if r.scenario == scenario):
            print(
                f"{r.server:22} {scenario.name:13} {r.req_s:7.0f} {r.rows_s:8.0f} "
                f"{r.percentile_ms(50):7.2f} {r.percentile_ms(99):7.2f} "
                f"{r.percentile_ms(99.9):8.2f} {r.errors:6d} "
                f"{_fmt(r.server_ms_per_req, '14.3f')} {_fmt(r.client_cpu_pct, '6.0f', '%')} "
                f"{_ratio(r.req_s, bare and bare.req_s):>12} "
                f"{_ratio(r.percentile_ms(99), bare and bare.percentile_ms(99)):>10} "
                f"{_ratio(r.req_s, fastest and fastest.req_s):>17} "
                f"{_ratio(r.percentile_ms(50), quickest and quickest.percentile_ms(50)):>15}"
            )


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    width = int(spec.split(".")[0]) + len(unit)
    return format(value, spec) + unit if value is not None else "-".rjust(width)


def _ratio(value: float, base: float | None) -> str:
    return f"{value / base:.2f}x" if base else "-"


def print_targets(results: list[Result]) -> None:
    """The issues' targets, reported (this script asserts nothing)."""
    c1, c32 = SCENARIOS[0], SCENARIOS[1]
    print("\ntargets:")
    bare = bare_row(results, c32)
    for r in (r for r in results if r.scenario == c32 and r.server.startswith("trainserve")):
        if bare is None or not r.latencies:
            break
        speed, tail = r.req_s / bare.req_s, r.percentile_ms(99) / bare.percentile_ms(99)
        verdict = "met" if speed >= 1.5 and tail <= 2 else "NOT met"
        print(
            f"  issue 10, c=32, {r.server}: req/s ≥ 1.5x bare's and p99 ≤ 2x bare's: "
            f"{r.req_s:.0f} vs {bare.req_s:.0f} = {speed:.2f}x, p99 {r.percentile_ms(99):.2f} "
            f"vs {bare.percentile_ms(99):.2f} ms = {tail:.2f}x, {verdict}"
        )
    ours = {r.scenario: r for r in results if r.server == f"trainserve rows={_default_rows()}"}
    fastest, _ = best_peer(results, c32)
    _, quickest = best_peer(results, c1)
    if c32 in ours and fastest:
        ours_s, theirs_s = ours[c32].req_s, fastest.req_s
        verdict = "met" if ours_s >= 1.5 * theirs_s else "NOT met"
        print(
            f"  issue 5, c=32 req/s ≥ 1.5x the better peer's: {ours_s:.0f} vs {fastest.server} "
            f"{theirs_s:.0f} = {ours_s / theirs_s:.2f}x, {verdict}"
        )
    if c1 in ours and quickest:
        ours_ms, theirs_ms = ours[c1].percentile_ms(50), quickest.percentile_ms(50)
        verdict = "met" if ours_ms <= theirs_ms else "NOT met"
        print(
            f"  issue 5, c=1 p50 ≤ the better peer's: {ours_ms:.2f} ms vs {quickest.server} "
            f"{theirs_ms:.2f} ms = {ours_ms / theirs_ms:.2f}x, {verdict}"
        )
    errors = sum(r.errors for r in results)
    print(f"  0 errors: {errors} in all, {'met' if errors == 0 else 'NOT met'}")
    for r in results:
        if r.first_error:
            print(f"  first error, {r.server} {r.scenario.name}: {r.first_error}")


def _default(setting: str) -> Any:
    return Settings.model_fields[setting].default


def _default_rows() -> int:
    return int(_default("batch_max_rows"))


def versions(peers_venv: Path) -> str:
    found = sorted(p.name for p in peers_venv.glob("lib/python*/site-packages/*.dist-info"))
    names = ("torchserve-", "litserve-", "uvloop-", "httptools-")
    peers = [n.removesuffix(".dist-info") for n in found if n.startswith(names)]
    return ", ".join(peers) or "peers' venv not installed"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15, help="measured, per scenario")
    parser.add_argument("--warmup", type=float, default=3, help="unmeasured, before each")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated")
    parser.add_argument(
        "--scenarios",
        default=",".join(s.key for s in SCENARIOS),
        help="comma-separated: " + ", ".join(f"{s.key} ({s.name})" for s in SCENARIOS),
    )
    parser.add_argument(
        "--batch-rows",
        default=str(_default_rows()),
        help="trainserve's TRAINSERVE_BATCH_MAX_ROWS, comma-separated: one trainserve each",
    )
    parser.add_argument("--peers-venv", type=Path, default=ROOT / "build" / "predict-peers")
    parser.add_argument(
        "--client", choices=sorted(CLIENTS), default="h11", help="the load generator's HTTP client"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads, every server")
    parser.add_argument("--server-core", type=int, default=0)
    parser.add_argument("--client-core", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32, help="the peers' batch, requests")
    parser.add_argument("--batch-delay-ms", type=float, default=5, help="the peers' batch wait")
    args = parser.parse_args()
    args.servers = [s for s in args.servers.split(",") if s]
    if unknown := set(args.servers) - set(SERVERS):
        parser.error(f"unknown servers {sorted(unknown)}; choose from {', '.join(SERVERS)}")
    keys = {s.key: s for s in SCENARIOS}
    names = [k for k in args.scenarios.split(",") if k]
    if unknown := set(names) - set(keys):
        parser.error(f"unknown scenarios {sorted(unknown)}; choose from {', '.join(keys)}")
    args.scenarios = [s for s in SCENARIOS if s.key in names]
    try:
        args.batch_rows = [int(n) for n in args.batch_rows.split(",") if n]
    except ValueError:
        parser.error("--batch-rows: comma-separated whole numbers, e.g. 1,8,64,256")
    if not args.batch_rows or min(args.batch_rows) < 1:
        parser.error("--batch-rows: at least one, each ≥ 1")
    if args.seconds <= 0 or args.warmup < 0 or args.threads < 1:
        parser.error("--seconds must be > 0, --warmup ≥ 0 and --threads ≥ 1")
    return args


def without_absent_peers(servers: list[str], peers_venv: Path) -> list[str]:
    """The peers are optional: without their venv they are skipped, with a note."""
    if (peers_venv / "bin" / "python").exists():
        return servers
    skipped = [s for s in servers if s in PEERS]
    if skipped:
        print(
            f"note: {', '.join(skipped)} skipped: no venv at {peers_venv} "
            "(bench/README.md installs it)\n",
            flush=True,
        )
    return [s for s in servers if s not in PEERS]


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"{datetime.now():%Y-%m-%d %H:%M}, torch {torch.__version__}, threads {args.threads}, "
        f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}; "
        f"servers on core {args.server_core}, load generator ({args.client}) on core "
        f"{args.client_core}\n"
        f"mlp {FEATURES}-{HIDDEN}-{CLASSES}; {args.warmup:g} s warm-up + {args.seconds:g} s "
        f"per scenario; peers batch {args.batch_size} requests / {args.batch_delay_ms:g} ms, "
        f"trainserve {'/'.join(map(str, args.batch_rows))} rows / "
        f"{_default('batch_max_delay_ms')} ms (its default wait)\n{versions(args.peers_venv)}\n",
        flush=True,
    )
    servers = without_absent_peers(args.servers, args.peers_venv)
    model = make_model()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="trainserve-bench-predict-") as tmp:
        work = Path(tmp)
        torch.save(model.state_dict(), work / "mlp.pt")
        setup = Setup(
            work, work / "mlp.pt", model, args.peers_venv.resolve(), args.threads,
            args.server_core, args.batch_size, args.batch_delay_ms,
        )  # fmt: skip
        for scenario in args.scenarios:
            results.append(raw_forward(model, scenario, min(args.seconds, 3), args.server_core))
        os.sched_setaffinity(0, {args.client_core})
        for label, launch in launchers(servers, args.batch_rows):
            try:
                results += bench_server(launch, setup, args.scenarios, args)
            except (Unavailable, subprocess.SubprocessError, httpx.HTTPError) as exc:
                print(f"{label}: left out: {exc}", flush=True)
    print()
    print_table(results)
    print_targets(results)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")  # a shared machine's noise


if __name__ == "__main__":
    main()
