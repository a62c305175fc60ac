"""One job, from claim to registered model version. Read a run in these files, in order:

1. here: claim the attempt (app/services/job_state.py, one guarded UPDATE), train it, and
   write its outcome; every write is fenced by the attempt number, so an attempt that lost
   the job stops without touching anything;
2. worker/training/lease.py: a thread renews the lease while this one trains, and brings back
   a cancel or a drain;
3. worker/training/setup.py: the spec and its data become a model, an optimizer and the
   loop's options (worker/data/prepare.py splits and preprocesses the rows);
4. worker/training/loop.py: the epochs, on tensors resident on the device;
5. worker/training/reporter.py: after each epoch a checkpoint (worker/training/resume.py),
   then the epoch's metrics on the job row; after each step, whether to stop.

A succeeded job's version is registered in the same transaction that marks it succeeded.
"""

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from app.core.config import Settings
from app.core.db import session_scope
from app.core.errors import storage_full
from app.datasets.stored import load_stored
from app.ml.bundle import ModelBundle
from app.ml.devices import resolve_device
from app.models import JobStatus
from app.schemas.job import JobSpec
from app.services import job_state
from app.services.job_state import Claim, LeaseLost
from app.storage import StoreUnavailable, store_for
from worker.data.prepare import TrainingData, load_raw
from worker.node import node_id, process_id
from worker.training import setup
from worker.training.base import Base, load_base
from worker.training.lease import LeaseKeeper
from worker.training.loop import Diverged, StopRequested, evaluate, fit
from worker.training.reporter import Reporter
from worker.training.resume import CheckpointDir, TrainingState
from worker.training.stop import StopReason
from worker.training.warm_start import load_parent

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    status: JobStatus
    message: str
    # succeeded: the job's final metrics and report, the new version's lineage, and the
    # status message once its version number is known
    result: dict[str, Any] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    registered: Callable[[int], str] | None = None


def run_job(job_id: str, settings: Settings) -> None:
    with session_scope() as session:
        claim = job_state.claim(session, job_id, process_id(), settings.lease_s, node_id())
    if claim is None:
        log.info("job %s is not queued; nothing to do (duplicate or stale message)", job_id)
        return
    # The lease is renewed from its own thread from here on: a claim without a live renewal
    # would lapse during data loading or a long first step, and the reaper would take it.
    with LeaseKeeper(claim, settings, node_id()) as keeper:
        try:
            outcome = train_attempt(claim, settings, keeper)
            if outcome is not None:
                _finish(claim, outcome)
        except LeaseLost:
            log.warning(
                "job %s attempt %d lost its lease; stopping without writing", job_id, claim.attempt
            )
        except Exception as exc:
            _failed(claim, exc, settings)


def _failed(claim: Claim, exc: Exception, settings: Settings) -> None:
    full = storage_full(exc)
    if full is not None:
        log.error("job %s attempt %d ran out of storage: %s", claim.job_id, claim.attempt, exc)
        _retry_later(claim, settings, full.message, "storage_full")
    elif isinstance(exc, StoreUnavailable):
        log.error(
            "job %s attempt %d: the artifact store failed: %s", claim.job_id, claim.attempt, exc
        )
        _retry_later(claim, settings, str(exc), "store_unavailable")
    else:
        log.exception("job %s failed", claim.job_id)
        _finish(claim, Outcome(JobStatus.failed, f"{type(exc).__name__}: {exc}"))


def _retry_later(claim: Claim, settings: Settings, reason: str, kind: str) -> None:
    # Not the job's fault: job_state tries it again later, or fails it once attempts are spent.
    with _fenced(claim, "retrying it"), session_scope() as session:
        job_state.retry_later(
            session, claim.job_id, claim.attempt, reason, settings.storage_retry_s, kind
        )


def _finish(claim: Claim, outcome: Outcome) -> None:
    with _fenced(claim, f"marking it {outcome.status}"), session_scope() as session:
        if outcome.registered is not None:
            job_state.succeed(
                session,
                claim.job_id,
                claim.attempt,
                outcome.result,
                outcome.lineage,
                outcome.registered,
            )
        else:
            job_state.finish(session, claim.job_id, claim.attempt, outcome.status, outcome.message)


@contextmanager
def _fenced(claim: Claim, what: str) -> Iterator[None]:
    """A final write that job_state's fence refused: another attempt owns the job now."""
    try:
        yield
    except LeaseLost:
        log.warning(
            "job %s attempt %d no longer owns the job; not %s", claim.job_id, claim.attempt, what
        )


def train_attempt(claim: Claim, settings: Settings, keeper: LeaseKeeper) -> Outcome | None:
    """Train the claimed attempt; None when the job went back to the queue instead."""
    spec = JobSpec.model_validate(claim.spec)
    if spec.training.devices > 1:
        # Imported here: worker/training/distributed.py builds on this module's pieces.
        from worker.training.distributed import train_distributed

        return train_distributed(claim, settings, keeper, spec)
    device = resolve_device(spec.training.device)
    base = load_base(spec, settings)
    parent = load_parent(spec, claim.project, settings)
    raw = load_raw(spec, lambda dataset_id: load_stored(settings, dataset_id))
    run = setup.assemble(spec, raw, device, base, parent)
    state = TrainingState(run.model, run.optimizer, run.generator, setup.stateful_parts(run.opts))
    ckpts = checkpoints_of(claim, settings)
    max_runtime = spec.training.max_runtime_s or settings.max_job_runtime_s
    keep_best = run.opts.early_stopping is not None
    reporter = Reporter(claim, keeper, spec.training.epochs, ckpts, state, keep_best, max_runtime)
    # The newest readable checkpoint of an earlier attempt (killed, drained, reaped): its
    # model, optimizer, schedule and RNG states, so the resumed run is the run uninterrupted.
    resume = ckpts.restore(state)
    if resume is not None:
        reporter.resumed(resume)
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
            start_epoch=reporter.epoch,
            start_step=reporter.step,
        )
    except StopRequested:
        return stopped(claim, reporter)
    except Diverged as exc:
        return Outcome(JobStatus.failed, f"diverged: {exc}")
    return conclude(claim, spec, run, ckpts, reporter, last, base)


def checkpoints_of(claim: Claim, settings: Settings) -> CheckpointDir:
    """The attempt's checkpoints in the store, resuming from what earlier attempts committed."""
    return CheckpointDir(
        store_for(settings),
        claim.job_id,
        claim.attempt,
        settings.checkpoints_kept,
        claim.checkpoints,
    )


def stopped(claim: Claim, reporter: Reporter) -> Outcome | None:
    """The loop stopped after a step because the reporter asked it to (worker/training/stop.py
    says where each reason comes from); the last epoch's checkpoint stands."""
    after = f"after epoch {reporter.epoch}" if reporter.epoch else "before its first epoch ended"
    match reporter.stop_reason:
        case StopReason.DRAIN:
            # The end of a drain: hand the job back now rather than finish it, so the node can
            # shut down; the next attempt, on any node, resumes from that checkpoint.
            with session_scope() as session:
                job_state.requeue(
                    session,
                    claim.job_id,
                    claim.attempt,
                    "requeued",
                    f"worker shutting down; its last checkpoint is {after}",
                )
            return None
        case StopReason.TIMEOUT:
            return Outcome(
                JobStatus.failed,
                f"timeout: ran past max_runtime_s={reporter.max_runtime_s:.0f}, {after}",
            )
        case _:
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


def conclude(
    claim: Claim,
    spec: JobSpec,
    run: setup.Assembly,
    ckpts: CheckpointDir,
    reporter: Reporter,
    last: int,
    base: Base | None,
) -> Outcome:
    """Pick the epoch to register (the best one under early stopping) and test it. Its
    metrics come from the recorded history, whichever attempt recorded them."""
    data, opts = run.data, run.opts
    if opts.early_stopping is not None:
        best, validation = ckpts.load_best(run.model)
    else:
        best, validation = last, reporter.reports.get(last, {})
    test_metrics, test_report = evaluate(
        run.model, run.loss_fn, data.x_test, data.y_test, opts, "test"
    )
    with session_scope() as session:
        metrics = {**job_state.epoch_metrics(session, claim.job_id, best), **test_metrics}
    report: dict[str, Any] = {
        "best_epoch": best,
        "last_epoch": last,
        "validation": validation,
        "test": test_report,
    }
    lineage = _save_model(claim, spec, data, run.model.to("cpu"), ckpts, base)
    # What the version takes in the store: for a fine-tuned base, only what training changed.
    report["stored_bytes"] = lineage.pop("stored_bytes")
    if base is not None:
        report["base_model"] = {"id": base.id, "name": base.name}
    stopped = f"; early stopping after epoch {last}" if last < spec.training.epochs else ""
    chosen = f" (best epoch {best} of {last}{stopped})" if opts.early_stopping is not None else ""
    return Outcome(
        JobStatus.succeeded,
        "registered",
        result={"metrics": metrics, "report": report},
        lineage=lineage | {"metrics": {**metrics, "report": report}},
        registered=lambda version: f"registered {spec.model_name} version {version}{chosen}",
    )


def _save_model(
    claim: Claim,
    spec: JobSpec,
    data: TrainingData,
    model: nn.Module,
    ckpts: CheckpointDir,
    base: Base | None,
) -> dict[str, Any]:
    """Write the model bundle; return the lineage its version is registered with."""
    bundle = ModelBundle(
        arch=spec.model.arch,
        options=setup.model_options(spec, data, base),
        task=data.task,
        output_dim=data.output_dim,
        classes=data.classes,
        preprocessor=data.preprocessor.to("cpu"),
        y_scaler=data.y_scaler,
        model=model,
    )
    stored = ckpts.save_model(bundle.save)
    return {
        "task": data.task,
        "spec": claim.spec,
        "dataset": data.dataset,
        "classes": data.classes,
        "input_shape": data.preprocessor.input_shape,
        "checkpoint_path": stored.key,
        "checkpoint_sha256": stored.sha256,
        "stored_bytes": stored.size,
        "base_model_id": base.id if base is not None else None,
    }
