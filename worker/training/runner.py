"""One job, from claim to registered model version.

The job row is the truth: this module claims it, renews its lease while training, writes
a checkpoint and the metrics every epoch, and moves it to a terminal state. Every write
is fenced by the attempt number, so a stale attempt stops without touching anything.
"""

import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

import torch
from sqlalchemy.orm import Session
from torch import nn

from app.core.config import Settings
from app.core.db import session_scope
from app.ml import checkpoint
from app.ml.bundle import ModelBundle
from app.ml.zoo import arch_options, build_model
from app.models import Job, JobStatus
from app.schemas.job import JobSpec, Task
from app.services import job_state, registry
from app.services.job_state import Claim, LeaseLost
from worker.data.prepare import TrainingData, prepare
from worker.training.loop import Diverged, EpochResult, StopRequested, fit

log = logging.getLogger(__name__)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_job(job_id: str, settings: Settings) -> None:
    with session_scope() as session:
        claim = job_state.claim(session, job_id, worker_id(), settings.lease_s)
    if claim is None:
        log.info("job %s is not queued; nothing to do (duplicate or stale message)", job_id)
        return
    try:
        status, message, version = train(claim, settings)
    except LeaseLost:
        log.warning(
            "job %s attempt %d lost its lease; stopping without writing", job_id, claim.attempt
        )
        return
    except Exception as exc:
        log.exception("job %s failed", job_id)
        status, message, version = JobStatus.failed, f"{type(exc).__name__}: {exc}", None
    _finish(claim, status, message, version)


def _finish(claim: Claim, status: JobStatus, message: str, version: int | None) -> None:
    try:
        with session_scope() as session:
            job_state.finish(session, claim.job_id, claim.attempt, status, message, version)
    except LeaseLost:
        log.warning(
            "job %s attempt %d no longer owns the job; not marking it %s",
            claim.job_id,
            claim.attempt,
            status,
        )


def train(claim: Claim, settings: Settings) -> tuple[JobStatus, str, int | None]:
    spec = JobSpec.model_validate(claim.spec)
    device = _device(spec.training.device)
    data = prepare(spec).to(device)
    torch.manual_seed(spec.training.seed)
    model = build_model(
        spec.model.arch, data.input_dim, data.output_dim, arch_options(spec.model.model_dump())
    )
    model.to(device)
    optimizer = _optimizer(model, spec)
    loss_fn: nn.Module = nn.CrossEntropyLoss() if data.task == Task.classification else nn.MSELoss()
    generator = torch.Generator().manual_seed(spec.training.seed)
    ckpts = CheckpointDir(settings.artifacts_dir / "jobs" / claim.job_id, settings.checkpoints_kept)
    start_epoch, start_step = ckpts.restore(model, optimizer, generator)
    reporter = Reporter(claim, settings, spec.training.epochs, ckpts, model, optimizer, generator)
    if start_epoch:
        reporter.event("resumed", f"resumed from the checkpoint of epoch {start_epoch}")
    try:
        fit(
            model,
            optimizer,
            loss_fn,
            x_train=data.x_train,
            y_train=data.y_train,
            x_val=data.x_val,
            y_val=data.y_val,
            task=data.task,
            epochs=spec.training.epochs,
            batch_size=spec.training.batch_size,
            generator=generator,
            start_epoch=start_epoch,
            start_step=start_step,
            on_step=reporter.on_step,
            on_epoch_end=reporter.on_epoch_end,
        )
    except StopRequested:
        return JobStatus.cancelled, f"cancelled while running, after epoch {reporter.epoch}", None
    except Diverged as exc:
        return JobStatus.failed, f"diverged: {exc}", None
    version = _register(claim, spec, data, model.to("cpu"), ckpts.root, reporter.metrics)
    return JobStatus.succeeded, f"registered {spec.model_name} version {version}", version


def _device(requested: str) -> torch.device:
    if requested == "auto" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def _optimizer(model: nn.Module, spec: JobSpec) -> torch.optim.Optimizer:
    opt = spec.training.optimizer
    if opt.name == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=opt.lr,
            momentum=opt.momentum,
            nesterov=opt.nesterov and opt.momentum > 0,
            weight_decay=opt.weight_decay,
        )
    cls = torch.optim.Adam if opt.name == "adam" else torch.optim.AdamW
    return cls(model.parameters(), lr=opt.lr, weight_decay=opt.weight_decay)


def _register(
    claim: Claim,
    spec: JobSpec,
    data: TrainingData,
    model: nn.Module,
    root: Path,
    metrics: dict[str, float],
) -> int:
    bundle = ModelBundle(
        arch=spec.model.arch,
        options=arch_options(spec.model.model_dump()),
        task=data.task,
        input_shape=[data.input_dim],
        output_dim=data.output_dim,
        classes=data.classes,
        x_scaler=data.x_scaler,
        y_scaler=data.y_scaler,
        model=model,
    )
    path = root / "model.safetensors"
    sha256 = bundle.save(path)
    with session_scope() as session:
        # Lock the job row: only the attempt that still owns it registers, and only once.
        job = session.get(Job, claim.job_id, with_for_update=True)
        if job is None or job.status != JobStatus.running or job.attempt != claim.attempt:
            raise LeaseLost(claim.job_id)
        row = registry.register_version(
            session,
            model_name=spec.model_name,
            project=job.project,
            job_id=claim.job_id,
            task=data.task,
            spec=claim.spec,
            dataset=data.dataset,
            metrics=metrics,
            classes=data.classes,
            input_shape=[data.input_dim],
            checkpoint_path=str(path.relative_to(root.parents[1])),
            checkpoint_sha256=sha256,
        )
        return row.version


class CheckpointDir:
    """A job's training checkpoints: epoch-NNNN.safetensors, the last k kept."""

    def __init__(self, root: Path, keep: int) -> None:
        self.root = root
        self.keep = keep

    def save(
        self,
        epoch: int,
        step: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
    ) -> None:
        tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
        optim_tensors, optim_skeleton = checkpoint.flatten_state(optimizer.state_dict(), "optim")
        tensors.update(optim_tensors)
        tensors["rng.generator"] = generator.get_state()
        checkpoint.save(
            self.root / f"epoch-{epoch:04d}.safetensors",
            tensors,
            {"kind": "training", "epoch": epoch, "step": step, "optimizer": optim_skeleton},
        )
        for old in self._files()[: -self.keep]:
            old.unlink(missing_ok=True)

    def restore(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator
    ) -> tuple[int, int]:
        """Load the newest readable checkpoint; (0, 0) when there is none."""
        for path in reversed(self._files()):
            try:
                ckpt = checkpoint.load(path)
            except checkpoint.CheckpointError as exc:
                log.warning("skipping unreadable checkpoint %s: %s", path.name, exc)
                continue
            weights = {
                k[len("model.") :]: v for k, v in ckpt.tensors.items() if k.startswith("model.")
            }
            model.load_state_dict(weights)
            optimizer.load_state_dict(
                checkpoint.unflatten_state(ckpt.meta["optimizer"], ckpt.tensors)
            )
            generator.set_state(ckpt.tensors["rng.generator"])
            return int(ckpt.meta["epoch"]), int(ckpt.meta["step"])
        return 0, 0

    def _files(self) -> list[Path]:
        return sorted(self.root.glob("epoch-*.safetensors"))


class Reporter:
    """Turns loop callbacks into job-row writes: lease renewals, progress, checkpoints, metrics."""

    def __init__(
        self,
        claim: Claim,
        settings: Settings,
        epochs: int,
        ckpts: CheckpointDir,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
    ) -> None:
        self.claim, self.settings, self.ckpts = claim, settings, ckpts
        self.model, self.optimizer, self.generator = model, optimizer, generator
        self.epoch, self.step, self.epochs = 0, 0, epochs
        self.samples_per_s: float | None = None
        self.metrics: dict[str, float] = {}
        self._next_beat = 0.0
        self._cancel_requested = False

    def progress(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "epochs": self.epochs,
            "step": self.step,
            "samples_per_s": self.samples_per_s,
        }

    def on_step(self, rows: int) -> bool:
        """Renew the lease about once per heartbeat_s; True once a cancel was requested."""
        self.step += 1
        if not self._cancel_requested and time.monotonic() >= self._next_beat:
            with session_scope() as session:
                self._beat(session)
        return self._cancel_requested

    def on_epoch_end(self, result: EpochResult) -> None:
        self.epoch, self.step = result.epoch, result.step
        self.samples_per_s = round(result.samples_per_s, 1)
        self.metrics = {**self.metrics, **result.metrics}
        self.ckpts.save(result.epoch, result.step, self.model, self.optimizer, self.generator)
        with session_scope() as session:
            job_state.record_epoch(
                session,
                self.claim.job_id,
                self.claim.attempt,
                result.epoch,
                result.step,
                result.metrics,
            )
            self._beat(session)

    def _beat(self, session: Session) -> None:
        self._cancel_requested = job_state.heartbeat(
            session, self.claim.job_id, self.claim.attempt, self.settings.lease_s, self.progress()
        )
        self._next_beat = time.monotonic() + self.settings.heartbeat_s

    def event(self, kind: str, message: str) -> None:
        with session_scope() as session:
            job_state.add_event(session, self.claim.job_id, self.claim.attempt, kind, message)
