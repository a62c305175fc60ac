"""The ranks of a data-parallel job (training.devices > 1): what each rank runs, and the entry
point of ranks 1..N-1, `python -m worker.training.ranks RUN_DIR RANK`, which the worker process
that claimed the job starts and supervises while it runs rank 0 itself
(worker/training/distributed.py).

Every rank loads the same data, builds the same model from the job's seed and restores the
same checkpoint (worker/training/resume.py), then DistributedDataParallel averages gradients
at each step. A step's global batch (training.batch_size rows, the rows a single process would
take) is cut into N contiguous pieces, one per rank, so the averaged gradient is the single
process's. After every step the ranks agree, in one all_reduce of a flag, whether to go on:
rank 0's reporter (cancel, drain, time limit, a lost lease) decides for all, so all stop
after the same step. Every rank validates on the whole split with the same weights, so early
stopping and the schedule decide alike everywhere without a message. Only rank 0 writes:
checkpoints, metrics, the version.

CPU ranks are forked from rank 0 (everything is imported already); CUDA ranks start as fresh
interpreters, since a process that touched CUDA cannot fork one that uses it. A rank dies
with its parent (PR_SET_PDEATHSIG, and a thread watching the parent's pid elsewhere): a
SIGKILLed worker leaves no rank behind.
"""

import ctypes
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from app.core.config import Settings, get_settings
from app.core.db import get_engine
from app.datasets.stored import load_stored
from app.schemas.job import JobSpec
from app.services.job_state import Claim, LeaseLost
from worker.data.prepare import load_raw
from worker.training import setup
from worker.training.base import Base, load_base
from worker.training.loop import Diverged, StepHook, StopRequested, fit
from worker.training.resume import CheckpointDir, Resume, TrainingState
from worker.training.runner import checkpoints_of
from worker.training.warm_start import load_parent

log = logging.getLogger(__name__)
GO, STOP, LOST = 0, 1, 2  # the step flag; the ranks take its maximum
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Group:
    """One rank's place in the job's process group."""

    rank: int
    world: int
    kind: str  # "cpu" (gloo) or "cuda" (NCCL, GPU `rank` of those the worker sees)
    run_dir: Path  # the rendezvous file, the run file, each rank's ready/done/error notes
    timeout_s: float

    @property
    def device(self) -> torch.device:
        return torch.device(f"cuda:{self.rank}") if self.kind == "cuda" else torch.device("cpu")


@dataclass
class RankRun:
    """What one rank trains: the same on every rank, but for its shard of each step."""

    spec: JobSpec
    base: Base | None
    run: setup.Assembly
    state: TrainingState
    ckpts: CheckpointDir


def build(claim: Claim, settings: Settings, group: Group) -> RankRun:
    """The job's model, optimizer and data on this rank's device, with the loop's batch and
    order cut to this rank's share; the data and the model as a single process builds them."""
    spec = JobSpec.model_validate(claim.spec)
    if group.kind == "cuda":
        torch.cuda.set_device(group.device)
    elif "OMP_NUM_THREADS" not in os.environ:  # the ranks share the host's cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // group.world))
    base = load_base(spec, settings)
    parent = load_parent(spec, claim.project, settings)
    raw = load_raw(spec, lambda dataset_id: load_stored(settings, dataset_id))
    run = setup.assemble(spec, raw, group.device, base, parent)
    training = spec.training
    order, rows_per_step = run.opts.order, training.batch_size * training.gradient_accumulation
    run.opts.batch_size = training.batch_size // group.world
    run.opts.order = lambda n, generator: shard_rows(
        order(n, generator), group.rank, group.world, rows_per_step
    )
    state = TrainingState(run.model, run.optimizer, run.generator, setup.stateful_parts(run.opts))
    return RankRun(spec, base, run, state, checkpoints_of(claim, settings))


def shard_rows(order: torch.Tensor, rank: int, world: int, rows_per_step: int) -> torch.Tensor:
    """This rank's rows of an epoch's order: each step's rows_per_step (the global batch) cut
    into `world` contiguous pieces, piece `rank` here. An order of a length no multiple of
    world repeats its first rows (as DistributedSampler pads), so every rank takes as many
    rows and steps as the others; the rank's steps are then its pieces, one after another."""
    pad = (-order.shape[0]) % world
    if pad:
        order = torch.cat([order, order[torch.arange(pad) % order.shape[0]]])
    full = order.shape[0] // rows_per_step * rows_per_step
    steps = order[:full].view(-1, world, rows_per_step // world)[:, rank].reshape(-1)
    return torch.cat([steps, order[full:].view(world, -1)[rank]])


def join(group: Group) -> dist.ProcessGroup | None:
    """Join the job's process group (a file rendezvous in the run's own folder: no port to
    collide with another job's). Returns the group for the step flag: a gloo one beside
    NCCL, so the flag never waits for the GPU."""
    backend = "nccl" if group.kind == "cuda" else "gloo"
    dist.init_process_group(
        backend,
        init_method=(group.run_dir / "rendezvous").as_uri(),
        rank=group.rank,
        world_size=group.world,
        timeout=timedelta(seconds=group.timeout_s),
    )
    return dist.new_group(backend="gloo") if group.kind == "cuda" else None


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def agree_on_resume(resume: Resume | None, control: dist.ProcessGroup | None) -> None:
    """Every rank must carry on from the same checkpoint (each restored its own copy)."""
    epoch = resume.epoch if resume is not None else 0
    both = torch.tensor([epoch, -epoch], dtype=torch.int64)
    dist.all_reduce(both, op=dist.ReduceOp.MAX, group=control)
    if both[0].item() != -both[1].item():
        raise RuntimeError(
            f"the ranks restored different checkpoints (epochs {-both[1].item()} to "
            f"{both[0].item()})"
        )


def wrap(model: nn.Module, group: Group) -> nn.Module:
    """DDP averages gradients during backward. Buffers are not broadcast at each forward:
    BatchNorm's statistics are recomputed on every rank from the same rows before each
    evaluation (worker/training/loop.py, precise BN), so they agree where they are used."""
    ids = [group.rank] if group.kind == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)


def synced(local: StepHook, control: dist.ProcessGroup | None) -> StepHook:
    """A step hook that every rank calls after the same step: the ranks' flags' maximum
    says whether all go on. On rank 0 `local` is the reporter's (LeaseLost once another
    attempt owns the job: all ranks stop, and rank 0 raises it after the exchange)."""

    def on_step(rows: int) -> bool:
        lost: LeaseLost | None = None
        try:
            code = STOP if local(rows) else GO
        except LeaseLost as exc:
            code, lost = LOST, exc
        flag = torch.tensor([code], dtype=torch.int32)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=control)  # a CPU round trip
        if lost is not None:
            raise lost
        return int(flag.item()) != GO

    return on_step


def mean_loss(control: dist.ProcessGroup | None, world: int) -> Callable[[float], float]:
    """The epoch's training loss over all ranks' rows (each took as many)."""

    def mean(loss: float) -> float:
        total = torch.tensor([loss], dtype=torch.float64)
        dist.all_reduce(total, group=control)
        return float(total.item()) / world

    return mean


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL this rank when the process that started it dies (Linux),
    and watch the parent's pid from a thread (elsewhere, and as a second line)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # it died before the line above took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def write_run_file(run_dir: Path, claim: Claim, group: Group) -> None:
    """What ranks 1..N-1 need to build what rank 0 builds (the settings come from the
    environment they inherit)."""
    run = {
        "claim": dataclasses.asdict(claim) | {"started_at": claim.started_at.isoformat()},
        "world": group.world,
        "kind": group.kind,
        "timeout_s": group.timeout_s,
        "parent_pid": os.getpid(),
    }
    (run_dir / "run.json").write_text(json.dumps(run))


def note(run_dir: Path, rank: int, what: str, text: str = "") -> None:
    """A rank's note to rank 0: ready (set up, about to join), done (its last step), error."""
    path = run_dir / f"rank-{rank}.{what}"
    path.with_suffix(".tmp").write_text(text)
    path.with_suffix(".tmp").replace(path)


def train_rank(run_dir: Path, rank: int) -> None:
    """Rank 1..N-1: train alongside rank 0, writing nothing but notes to rank 0."""
    run = json.loads((run_dir / "run.json").read_text())
    die_with_parent(int(run["parent_pid"]))
    fields = run["claim"]
    claim = Claim(**fields | {"started_at": datetime.fromisoformat(fields["started_at"])})
    group = Group(rank, int(run["world"]), str(run["kind"]), run_dir, float(run["timeout_s"]))
    built = build(claim, get_settings(), group)
    resume = built.ckpts.restore(built.state)
    note(run_dir, rank, "ready")
    control = join(group)
    step = resume.step if resume is not None else 0

    def count(_rows: int) -> bool:
        nonlocal step
        step += 1
        return False

    try:
        agree_on_resume(resume, control)
        run_ = built.run
        fit(
            wrap(run_.model, group),
            run_.optimizer,
            run_.loss_fn,
            run_.splits,
            run_.opts,
            run_.generator,
            on_step=synced(count, control),
            on_epoch_end=lambda _result: None,
            start_epoch=resume.epoch if resume is not None else 0,
            start_step=step,
            sync_loss=mean_loss(control, group.world),
        )
    except (StopRequested, Diverged):
        pass  # rank 0 took the same decision at the same step, and reports it
    note(run_dir, rank, "done", json.dumps({"step": step}))
    leave()


def main(argv: list[str]) -> int:
    run_dir, rank = Path(argv[1]), int(argv[2])
    logging.basicConfig(level=logging.INFO, format=f"[rank {rank}] %(levelname)s %(message)s")
    try:
        train_rank(run_dir, rank)
    except Exception as exc:
        log.exception("rank %d failed", rank)
        note(run_dir, rank, "error", f"{type(exc).__name__}: {exc}"[:2000])
        return 1
    return 0


def forked(run_dir: Path, rank: int) -> int:
    """A CPU rank forked from rank 0's process, which has imported everything already (a
    fresh interpreter takes seconds to import torch and scikit-learn). It shares nothing of
    rank 0's but memory pages: no pooled connection (SQLAlchemy's advice after a fork), no
    signal handlers of Celery's pool child. CUDA ranks are never forked (STYLE.md rule 7)."""
    get_engine().dispose(close=False)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    return main(["forked", str(run_dir), str(rank)])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
