"""The `trainserve` command: the server's commands here (up: everything, embedded default;
api, worker, db, base-models) and the client's (jobs, datasets, models, keys, workers:
app/cli_client/)."""

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click

from app.cli_client import register
from app.core.config import Settings, get_settings
from app.core.pools import POOL_PATTERN, queue_for
from app.core.version import VERSION


def _settings(data_dir: Path | None) -> Settings:
    if data_dir is not None:
        os.environ["TRAINSERVE_DATA_DIR"] = str(data_dir)
        get_settings.cache_clear()
    return get_settings()


def worker_command(concurrency: int = 1, queue: str | None = None) -> list[str]:
    # Runs the worker by module path: app never imports worker.
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.celery_app:celery",
        "worker",
        "--loglevel",
        "INFO",
        "--concurrency",
        str(concurrency),
        "--without-gossip",
        "--without-mingle",
        "--hostname",
        f"trainserve-{os.getpid()}-%i@%h",
        *(["--queues", queue] if queue else []),
    ]


# Every file and folder the service makes (datasets, checkpoints, the SQLite database, the
# embedded broker's messages, admin.key) is its user's alone: set once here, before any of
# them is made, and inherited by the workers and API processes it starts.
PRIVATE_UMASK = 0o077


@click.group(context_settings={"max_content_width": 120, "terminal_width": 120})
@click.version_option(VERSION, prog_name="trainserve")
def main() -> None:
    """trainserve: train PyTorch models and serve them behind one API.

    The server: up, api, worker, db, base-models. The client of a running API: jobs,
    datasets, models, keys, workers (--url / TRAINSERVE_URL, --key / TRAINSERVE_KEY; by
    default the URL and admin key that `trainserve up` wrote in its data dir).
    """
    os.umask(PRIVATE_UMASK)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--data-dir", type=click.Path(path_type=Path), help="default ./.trainserve")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(0, 64))
def up(host: str, port: int, data_dir: Path | None, workers: int) -> None:
    """Start the API and N workers in the foreground; Ctrl-C stops all of them."""
    from app.main import create_app, prepare
    from app.services.bootstrap import ensure_admin_key

    os.environ.pop("TRAINSERVE_WORKER_POOL", None)  # its workers are the default pool's
    settings = _settings(data_dir)
    prepare(settings)
    ensure_admin_key(settings, click.echo)
    pool = WorkerPool(workers)
    pool.start()
    # uvicorn re-raises the SIGTERM it caught once it has shut down; without a handler of
    # ours that would end this process at once and orphan the workers.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        serve(create_app(settings), settings, host, port, 1)
    finally:
        pool.stop()


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--processes",
    default=1,
    show_default=True,
    type=click.IntRange(1, 256),
    envvar="TRAINSERVE_API_PROCESSES",
    help="API processes sharing the port; predict uses about one core per process",
)
def api(host: str, port: int, processes: int) -> None:
    """Serve the HTTP API only (an embedded SQLite database is upgraded on start)."""
    settings = get_settings()
    if processes > 1:
        _share_metrics(settings.data_dir / "metrics")
    serve("app.main:create_app", settings, host, port, processes)


def serve(app: Any, settings: Settings, host: str, port: int, processes: int) -> None:
    """uvicorn.run, and DATA_DIR/api.url saying where the API listens while it does: the client
    commands' default URL. Written once the socket is bound; removed when this API stops."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(
        app,
        factory=isinstance(app, str),
        host=host,
        port=port,
        workers=processes,
        log_level="info",
        access_log=settings.access_log,
    )
    announce = ApiUrlFile(settings.data_dir / "api.url", local_url(host, port))

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                announce.write()

    try:
        if processes > 1:
            sock = config.bind_socket()  # as uvicorn.run does: the processes share it
            announce.write()
            Multiprocess(config, sockets=[sock]).run()
            return
        server = Server(config)
        server.run()
        if not server.started:
            sys.exit(3)  # uvicorn's STARTUP_FAILURE, as uvicorn.run exits
    except KeyboardInterrupt:
        pass
    finally:
        announce.remove()


def local_url(host: str, port: int) -> str:
    """The URL a client on this host reaches an API listening on host:port at."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class ApiUrlFile:
    """DATA_DIR/api.url: one line, the URL. Written whole (a temporary file renamed into
    place); removed on stop only if it still names this API (another may have started since)."""

    def __init__(self, path: Path, url: str) -> None:
        self.path, self.url = path, url

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        partial.write_text(self.url + "\n")
        os.replace(partial, self.path)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.path.read_text().strip() == self.url:
                self.path.unlink()


def _share_metrics(folder: Path) -> None:
    """N API processes answer /metrics in turn, so each must show all of them: prometheus_client
    keeps every process's values in files under PROMETHEUS_MULTIPROC_DIR (read when the
    processes import it; they start after this). A previous run's files are removed."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)


@main.command()
@click.option(
    "--concurrency",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="jobs at once; run one worker per GPU instead where there are GPUs",
)
@click.option(
    "--pool",
    default=None,
    envvar="TRAINSERVE_WORKER_POOL",
    help="take jobs whose spec names this training.pool (e.g. gpu, h200); default: the "
    "default pool, jobs that name none",
)
@click.option(
    "--gpus",
    default=None,
    help="CUDA devices this worker sees, e.g. 0 or 0,1 (CUDA_VISIBLE_DEVICES, set before torch "
    "starts); one process sees them all: start one worker per GPU for one job per GPU",
)
def worker(concurrency: int, pool: str | None, gpus: str | None) -> None:
    """Run a Celery worker that trains jobs (of one pool)."""
    if pool is not None and not re.fullmatch(POOL_PATTERN, pool):
        raise click.BadParameter("letters, digits, '_' and '-', at most 64", param_hint="--pool")
    if gpus is not None and not re.fullmatch(r"\d+(,\d+)*", gpus):
        raise click.BadParameter(
            "device numbers separated by commas, e.g. 0,1", param_hint="--gpus"
        )
    if pool is not None:
        os.environ["TRAINSERVE_WORKER_POOL"] = pool
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus  # inherited by the exec'd worker, before torch
    get_settings.cache_clear()
    settings = get_settings()
    settings.ensure_dirs()
    command = worker_command(concurrency, queue_for(settings.queue_name, settings.worker_pool))
    os.execv(command[0], command)


@main.group()
def db() -> None:
    """Database schema (Alembic)."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Upgrade the schema (default: to the newest revision)."""
    from app.core.migrate import upgrade

    settings = get_settings()
    settings.ensure_dirs()
    upgrade(settings.db_url, revision)
    click.echo(f"database at revision {revision}")


@db.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Downgrade the schema to REVISION ('base' drops every table)."""
    from app.core.migrate import downgrade

    downgrade(get_settings().db_url, revision)
    click.echo(f"database at revision {revision}")


@main.group("base-models")
def base_models() -> None:
    """Pretrained base models (Hugging Face folders) that jobs fine-tune."""


@base_models.command("import")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--name", help="default: the folder's or archive's name")
@click.option(
    "--project",
    default=None,
    help="only this project may use it (default: every project, read-only through the API)",
)
def base_models_import(path: Path, name: str | None, project: str | None) -> None:
    """Check a model folder (or a .zip / .tar.gz of one) and copy it in as a base model."""
    from app.core.db import session_scope
    from app.core.errors import AppError
    from app.main import prepare
    from app.models import SHARED
    from app.services.base_model_catalog import import_base_model

    settings = get_settings()
    prepare(settings)
    name = name or path.name.removesuffix(".gz").removesuffix(".tar").removesuffix(".zip")
    try:
        with session_scope() as session:
            row = import_base_model(session, settings, path.resolve(), name, project or SHARED)
            click.echo(
                f"{row.id}  {row.name}  {row.family} ({row.model_type})  "
                f"{row.parameters:,} parameters"
            )
    except AppError as exc:
        raise click.ClickException(exc.message) from exc


@base_models.command("list")
def base_models_list() -> None:
    """List every base model, every project's."""
    from app.core.db import session_scope
    from app.models import SHARED
    from app.services.base_model_catalog import list_base_models

    with session_scope() as session:
        rows, _ = list_base_models(session, 200, None)
        for row in rows:
            shared = "shared" if row.project == SHARED else row.project
            click.echo(f"{row.id}  {row.name}  {row.family}  {row.parameters:,}  {shared}")


class WorkerPool:
    """Worker subprocesses for `up`, restarted if one dies, stopped together on exit.

    Each worker leads its own process group, so stopping it reaches its pool children too
    (a training child must not outlive its worker), and Ctrl-C reaches only `up`.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.procs: list[subprocess.Popen[bytes]] = []
        self._stopping = threading.Event()

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(worker_command(), start_new_session=True)

    def start(self) -> None:
        self.procs = [self._spawn() for _ in range(self.size)]
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        while not self._stopping.wait(2.0):
            for i, proc in enumerate(self.procs):
                if proc.poll() is not None and not self._stopping.is_set():
                    click.echo(
                        f"worker {proc.pid} exited ({proc.returncode}); restarting", err=True
                    )
                    self.procs[i] = self._spawn()

    def stop(self, grace_s: float = 20.0) -> None:
        self._stopping.set()
        for proc in self.procs:
            # The worker alone: its warm shutdown tells the running job to checkpoint and go
            # back to the queue, and waits for it; the group is killed only after the grace.
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                click.echo(
                    f"worker {proc.pid} did not stop in {grace_s:.0f} s; killing it", err=True
                )
            _signal_group(proc, signal.SIGKILL)  # also any pool child left behind


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    # The group may be gone already: a worker that exited took its children with it.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


register(main)

if __name__ == "__main__":
    main()
