"""A data-parallel attempt (training.devices > 1), from the worker process that claimed it.

That process keeps what a single-device attempt keeps, its claim and its LeaseKeeper, and is
rank 0: it trains beside the others, and alone reports (the Reporter's checkpoints, metrics
and stop reasons) and registers the version, as worker/training/runner.py does. It starts
ranks 1..N-1 as processes of their own (worker/training/ranks.py), in a fresh folder that
holds the rendezvous file, and ends them on every way out:

- a rank that dies or fails: the next collective fails at once (gloo and NCCL see the peer's
  socket close), and the attempt fails naming the rank and its error;
- a rank that hangs: the collective times out after TRAINSERVE_DDP_TIMEOUT_S;
- this process SIGKILLed: the kernel kills the ranks (PR_SET_PDEATHSIG); the lease lapses
  and the next attempt resumes from the last checkpoint, as any killed attempt does.
"""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Protocol

import torch

from app.core.config import Settings
from app.ml.devices import UnavailableDevice
from app.models import JobStatus
from app.schemas.job import JobSpec
from app.services.job_state import Claim, LeaseLost
from worker.training import ranks
from worker.training.lease import LeaseKeeper
from worker.training.loop import Diverged, StopRequested, fit
from worker.training.ranks import Group
from worker.training.reporter import Reporter
from worker.training.resume import Resume
from worker.training.runner import Outcome, conclude, stopped

log = logging.getLogger(__name__)
RUN_DIR_PREFIX = "trainserve-ddp-"
EXIT_WAIT_S = 30.0  # for the other ranks to end once rank 0 has left the loop


class RankFailed(RuntimeError):
    """A rank other than 0 died, failed, or never started."""


def rank_kind(requested: str, n: int, settings: Settings) -> str:
    """ "cuda" (one GPU per rank) or "cpu" (processes sharing the cores). auto takes the GPUs
    when this worker has n of them, else CPU ranks (submission allowed either)."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if requested == "cuda" or (requested == "auto" and gpus >= n):
        if gpus < n:
            raise UnavailableDevice(f"the job asks for {n} CUDA devices; this worker sees {gpus}")
        return "cuda"
    if n > settings.max_cpu_ranks:
        raise UnavailableDevice(
            f"the job asks for {n} devices; this worker has {gpus} GPUs and runs at most "
            f"{settings.max_cpu_ranks} CPU ranks (TRAINSERVE_MAX_CPU_RANKS)"
        )
    return "cpu"


def train_distributed(
    claim: Claim, settings: Settings, keeper: LeaseKeeper, spec: JobSpec
) -> Outcome | None:
    """Train the claimed attempt on N ranks; None when it went back to the queue instead."""
    n = spec.training.devices
    if spec.training.batch_size % n:  # refused at submission; a spec stored before that
        raise ValueError(f"batch_size {spec.training.batch_size} is not a multiple of {n}")
    kind = rank_kind(spec.training.device, n, settings)
    with RankProcesses(claim, settings, n, kind) as others:
        built = ranks.build(claim, settings, others.group)
        max_runtime = spec.training.max_runtime_s or settings.max_job_runtime_s
        keep_best = built.run.opts.early_stopping is not None
        epochs = spec.training.epochs
        reporter = Reporter(claim, keeper, epochs, built.ckpts, built.state, keep_best, max_runtime)
        # The same restore as a single-device attempt's; each rank restores its own copy.
        resume = built.ckpts.restore(built.state)
        if resume is not None:
            reporter.resumed(resume)
        others.wait_ready(keeper)
        reporter.event("data_parallel", f"training on {n} {kind.upper()} ranks")
        if spec.training.compile:
            reporter.event("compile_skipped", "compile does not apply to data-parallel jobs yet")
        try:
            last = _fit_rank0(built, others, reporter, resume)
        except StopRequested:
            others.finish(reporter)
            return stopped(claim, reporter)
        except Diverged as exc:
            return Outcome(JobStatus.failed, f"diverged: {exc}")
        others.finish(reporter)
        return conclude(claim, spec, built.run, built.ckpts, reporter, last, built.base)


def _fit_rank0(
    built: ranks.RankRun, others: "RankProcesses", reporter: Reporter, resume: Resume | None
) -> int:
    """Rank 0's loop: the reporter's hooks, its stop decision shared with every rank."""
    run, group = built.run, others.group
    try:
        control = ranks.join(group)
        ranks.agree_on_resume(resume, control)
        return fit(
            ranks.wrap(run.model, group),
            run.optimizer,
            run.loss_fn,
            run.splits,
            run.opts,
            run.generator,
            on_step=ranks.synced(reporter.on_step, control),
            on_epoch_end=reporter.on_epoch_end,
            start_epoch=reporter.epoch,
            start_step=reporter.step,
            sync_loss=ranks.mean_loss(control, group.world),
        )
    except (StopRequested, Diverged, LeaseLost):
        raise  # decided by all ranks together
    except Exception as exc:
        others.explain(exc)  # RankFailed when a rank died first: the cause, not the symptom
        raise
    finally:
        ranks.leave()


class RankProcesses:
    """Ranks 1..N-1 of one attempt: started on enter, ended (SIGKILL, if still running) and
    their folder removed on exit, whatever way the attempt leaves."""

    def __init__(self, claim: Claim, settings: Settings, world: int, kind: str) -> None:
        self.claim, self.world = claim, world
        _remove_old_run_dirs(claim.job_id)  # what a killed attempt of this job left
        run_dir = Path(tempfile.mkdtemp(prefix=f"{RUN_DIR_PREFIX}{claim.job_id}-"))
        self.group = Group(0, world, kind, run_dir, settings.ddp_timeout_s)
        self.procs: dict[int, Rank] = {}

    def __enter__(self) -> "RankProcesses":
        start = _fork if self.group.kind == "cpu" else _spawn
        try:
            ranks.write_run_file(self.group.run_dir, self.claim, self.group)
            for rank in range(1, self.world):
                self.procs[rank] = start(self.group.run_dir, rank)
        except BaseException:
            self.__exit__(None, None, None)  # the ranks started so far, and the folder
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs.values():
            proc.wait()
        shutil.rmtree(self.group.run_dir, ignore_errors=True)

    def wait_ready(self, keeper: LeaseKeeper) -> None:
        """Until every rank is set up (data loaded, checkpoint restored): joining the group
        before that would wait out the whole timeout for a rank that failed to start."""
        deadline = time.monotonic() + self.group.timeout_s
        while not all(self._note(rank, "ready") is not None for rank in self.procs):
            self._raise_if_failed()
            keeper.check()
            if time.monotonic() > deadline:
                raise RankFailed(f"the ranks were not ready within {self.group.timeout_s:.0f} s")
            time.sleep(0.05)

    def explain(self, exc: BaseException) -> None:
        """After rank 0's loop failed: if a rank died or failed, raise that instead; if a
        collective timed out (gloo says so in a plain RuntimeError), say which setting."""
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and not self._failed():
            time.sleep(0.1)
        self._raise_if_failed(exc)
        if isinstance(exc, RuntimeError) and "Timed out" in str(exc):
            timeout = f"TRAINSERVE_DDP_TIMEOUT_S ({self.group.timeout_s:.0f} s)"
            raise RankFailed(f"a rank did not answer within {timeout}: {exc}") from exc

    def finish(self, reporter: Reporter) -> None:
        """The ranks left the loop after the same step as rank 0; wait for them to end."""
        for rank, proc in self.procs.items():
            try:
                proc.wait(EXIT_WAIT_S)
            except subprocess.TimeoutExpired:
                raise RankFailed(f"rank {rank} did not end within {EXIT_WAIT_S:.0f} s") from None
        self._raise_if_failed()
        steps = {json.loads(self._note(rank, "done") or "{}").get("step") for rank in self.procs}
        if steps != {reporter.step}:
            raise RankFailed(f"the ranks ended at steps {sorted(steps)}, rank 0 at {reporter.step}")
        reporter.event("data_parallel", f"all {self.world} ranks ended after step {reporter.step}")

    def _note(self, rank: int, what: str) -> str | None:
        path = self.group.run_dir / f"rank-{rank}.{what}"
        return path.read_text() if path.exists() else None

    def _failed(self) -> list[str]:
        said = []
        for rank, proc in self.procs.items():
            code = proc.poll()
            if code is None or code == 0:
                continue
            if code < 0:
                said.append(f"rank {rank} was killed by {signal.Signals(-code).name}")
            else:
                error = self._note(rank, "error") or f"exited with code {code}"
                said.append(f"rank {rank} failed: {error}")
        return said

    def _raise_if_failed(self, cause: BaseException | None = None) -> None:
        if failed := self._failed():
            raise RankFailed(f"{'; '.join(failed)} (of {self.world} ranks)") from cause


class Rank(Protocol):
    """A rank's process, as subprocess.Popen shows one."""

    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def kill(self) -> None: ...


def _spawn(run_dir: Path, rank: int) -> Rank:
    """A fresh interpreter running the same code as this process, wherever it came from."""
    root = str(Path(ranks.__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    args = [sys.executable, "-m", "worker.training.ranks", str(run_dir), str(rank)]
    return subprocess.Popen(args, env=os.environ | {"PYTHONPATH": path})


class _Forked:
    """A forked rank behind Popen's three methods. os.fork, not multiprocessing: Celery's
    pool child counts as a daemonic process there, and those may not have children."""

    def __init__(self, run_dir: Path, rank: int) -> None:
        self.returncode: int | None = None
        self.pid = os.fork()
        if self.pid == 0:  # the rank: it must never return into the caller's frames
            code = 1
            try:
                code = ranks.forked(run_dir, rank)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        while (code := self.poll()) is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"rank pid {self.pid}", timeout or 0.0)
            time.sleep(0.05)
        return code

    def kill(self) -> None:
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)


def _fork(run_dir: Path, rank: int) -> Rank:
    return _Forked(run_dir, rank)


def _remove_old_run_dirs(job_id: str) -> None:
    """The folders earlier attempts of this job left when they were killed (not one whose
    rank 0 still runs: a reaped attempt that has not noticed yet)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{RUN_DIR_PREFIX}{job_id}-*"):
        try:
            os.kill(int(json.loads((folder / "run.json").read_text())["parent_pid"]), 0)
        except PermissionError:
            continue  # alive, another user's
        except (OSError, ValueError, KeyError):  # gone, or it never wrote its run file
            shutil.rmtree(folder, ignore_errors=True)
