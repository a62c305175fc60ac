"""One job, from claim to registered model version.

The job row is the truth: this module claims it, renews its lease while training, writes
a checkpoint and the metrics every epoch, and moves it to a terminal state. Every write
is fenced by the attempt number, so a stale attempt stops without touching anything.
"""

import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from app.core.config import Settings
from app.core.db import session_scope
from app.ml.bundle import ModelBundle
from app.ml.devices import resolve_device
from app.models import Job, JobStatus
from app.schemas.job import JobSpec
from app.services import job_state, registry
from app.services.job_state import Claim, LeaseLost
from worker.data.prepare import TrainingData, load_raw
from worker.data.stored import load_stored
from worker.training import setup
from worker.training.checkpoints import CheckpointDir, TrainingState
from worker.training.loop import Diverged, StopRequested, evaluate, fit
from worker.training.reporter import DRAIN, TIMEOUT, Reporter

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    status: JobStatus
    message: str
    version: int | None = None


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_job(job_id: str, settings: Settings) -> None:
    with session_scope() as session:
        claim = job_state.claim(session, job_id, worker_id(), settings.lease_s)
    if claim is None:
        log.info("job %s is not queued; nothing to do (duplicate or stale message)", job_id)
        return
    try:
        outcome = train(claim, settings)
        if outcome is None:
            return  # handed back to the queue (the worker is draining)
    except LeaseLost:
        log.warning(
            "job %s attempt %d lost its lease; stopping without writing", job_id, claim.attempt
        )
        return
    except Exception as exc:
        log.exception("job %s failed", job_id)
        outcome = Outcome(JobStatus.failed, f"{type(exc).__name__}: {exc}")
    _finish(claim, outcome)


def _finish(claim: Claim, outcome: Outcome) -> None:
    try:
        with session_scope() as session:
            job_state.finish(
                session,
                claim.job_id,
                claim.attempt,
                outcome.status,
                outcome.message,
                outcome.version,
            )
    except LeaseLost:
        log.warning(
            "job %s attempt %d no longer owns the job; not marking it %s",
            claim.job_id,
            claim.attempt,
            outcome.status,
        )


def train(claim: Claim, settings: Settings) -> Outcome | None:
    """Train the claimed attempt; None when the job went back to the queue instead."""
    spec = JobSpec.model_validate(claim.spec)
    device = resolve_device(spec.training.device)
    raw = load_raw(spec, lambda dataset_id: load_stored(settings, dataset_id))
    run = setup.assemble(spec, raw, device)
    state = TrainingState(run.model, run.optimizer, run.generator, setup.stateful_parts(run.opts))
    ckpts = CheckpointDir(
        settings.artifacts_dir / "jobs" / claim.job_id, claim.attempt, settings.checkpoints_kept
    )
    start_epoch, start_step = ckpts.restore(state)
    max_runtime = spec.training.max_runtime_s or settings.max_job_runtime_s
    keep_best = run.opts.early_stopping is not None
    reporter = Reporter(claim, settings, spec.training.epochs, ckpts, state, keep_best, max_runtime)
    if start_epoch:
        reporter.event("resumed", f"resumed from the checkpoint of epoch {start_epoch}")
    model = _maybe_compile(run.model, spec, device, reporter)
    try:
        last = fit(
            model,
            run.optimizer,
            run.loss_fn,
            run.splits,
            run.opts,
            run.generator,
            on_step=reporter.on_step,
            on_epoch_end=reporter.on_epoch_end,
            start_epoch=start_epoch,
            start_step=start_step,
        )
    except StopRequested:
        return _stopped(claim, reporter)
    except Diverged as exc:
        return Outcome(JobStatus.failed, f"diverged: {exc}")
    return _conclude(claim, spec, run, ckpts, reporter, last)


def _stopped(claim: Claim, reporter: Reporter) -> Outcome | None:
    after = f"after epoch {reporter.epoch}" if reporter.epoch else "before its first epoch ended"
    if reporter.stop_reason == DRAIN:
        with session_scope() as session:
            job_state.requeue(
                session,
                claim.job_id,
                claim.attempt,
                "requeued",
                f"worker shutting down; its last checkpoint is {after}",
            )
        return None
    if reporter.stop_reason == TIMEOUT:
        return Outcome(
            JobStatus.failed,
            f"timeout: ran past max_runtime_s={reporter.max_runtime_s:.0f}, {after}",
        )
    return Outcome(JobStatus.cancelled, f"cancelled while running, {after}")


def _maybe_compile(
    model: nn.Module, spec: JobSpec, device: torch.device, reporter: Reporter
) -> nn.Module:
    if not spec.training.compile:
        return model
    if device.type != "cuda":
        reporter.event("compile_skipped", "compile applies on CUDA only; training eagerly on CPU")
        return model
    # The compiled wrapper shares parameters with `model`, which is what gets saved.
    return torch.compile(model)  # type: ignore[return-value]


def _conclude(
    claim: Claim,
    spec: JobSpec,
    run: setup.Assembly,
    ckpts: CheckpointDir,
    reporter: Reporter,
    last: int,
) -> Outcome:
    """Pick the epoch to register (the best one under early stopping), test it, register it."""
    data, opts = run.data, run.opts
    best = ckpts.load_best(run.model) if opts.early_stopping is not None else last
    test_metrics, test_report = evaluate(
        run.model, run.loss_fn, data.x_test, data.y_test, opts, "test"
    )
    metrics = {**reporter.history.get(best, {}), **test_metrics}
    report: dict[str, Any] = {
        "best_epoch": best,
        "last_epoch": last,
        "validation": reporter.reports.get(best, {}),
        "test": test_report,
    }
    version = _register(claim, spec, data, run.model.to("cpu"), ckpts, metrics, report)
    stopped = f"; early stopping after epoch {last}" if last < spec.training.epochs else ""
    chosen = f" (best epoch {best} of {last}{stopped})" if opts.early_stopping is not None else ""
    return Outcome(
        JobStatus.succeeded, f"registered {spec.model_name} version {version}{chosen}", version
    )


def _register(
    claim: Claim,
    spec: JobSpec,
    data: TrainingData,
    model: nn.Module,
    ckpts: CheckpointDir,
    metrics: dict[str, float],
    report: dict[str, Any],
) -> int:
    bundle = ModelBundle(
        arch=spec.model.arch,
        options=setup.model_options(spec, data),
        task=data.task,
        output_dim=data.output_dim,
        classes=data.classes,
        preprocessor=data.preprocessor.to("cpu"),
        y_scaler=data.y_scaler,
        model=model,
    )
    path = ckpts.model_path
    sha256 = bundle.save(path)
    with session_scope() as session:
        # Lock the job row: only the attempt that still owns it registers, and only once.
        job = session.get(Job, claim.job_id, with_for_update=True)
        if job is None or job.status != JobStatus.running or job.attempt != claim.attempt:
            raise LeaseLost(claim.job_id)
        job.metrics, job.report = metrics, report
        row = registry.register_version(
            session,
            model_name=spec.model_name,
            project=job.project,
            job_id=claim.job_id,
            task=data.task,
            spec=claim.spec,
            dataset=data.dataset,
            metrics={**metrics, "report": report},
            classes=data.classes,
            input_shape=data.preprocessor.input_shape,
            checkpoint_path=str(path.relative_to(ckpts.job_root.parents[1])),
            checkpoint_sha256=sha256,
        )
        return row.version
