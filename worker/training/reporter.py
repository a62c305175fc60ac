"""Turns loop callbacks into job-row writes: progress, checkpoints, metrics, and the reasons to
stop early: a cancel, a draining worker, the job's time limit, a lost lease.

The lease itself is renewed by the LeaseKeeper's thread, not here: a step may take longer
than a lease. Steps only read what the keeper last learned, so they touch no database.
"""

import time
from typing import Any

from app.core.db import session_scope
from app.models.base import utcnow
from app.services import job_state
from app.services.job_state import Claim
from worker.training.lease import LeaseKeeper
from worker.training.loop import EpochResult
from worker.training.resume import CheckpointDir, Resume, TrainingState
from worker.training.stop import StopReason


class Reporter:
    def __init__(
        self,
        claim: Claim,
        keeper: LeaseKeeper,
        epochs: int,
        ckpts: CheckpointDir,
        state: TrainingState,
        keep_best: bool,
        max_runtime_s: float,
    ) -> None:
        self.claim, self.keeper, self.ckpts, self.state = claim, keeper, ckpts, state
        keeper.progress = self.progress  # each renewal carries what GET /v1/jobs/{id} shows
        self.keep_best = keep_best
        self.epoch, self.step, self.epochs = 0, 0, epochs
        self.samples_per_s: float | None = None
        self.reports: dict[int, dict[str, Any]] = {}  # epoch → confusion matrix, per class
        self._timed_out = False
        elapsed = (utcnow() - claim.started_at).total_seconds()  # earlier attempts count too
        self.deadline = time.monotonic() + max_runtime_s - elapsed
        self.max_runtime_s = max_runtime_s

    def progress(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "epochs": self.epochs,
            "step": self.step,
            "samples_per_s": self.samples_per_s,
        }

    @property
    def stop_reason(self) -> StopReason | None:
        if self._timed_out:
            return StopReason.TIMEOUT
        return self.keeper.stop_reason

    def on_step(self, rows: int) -> bool:
        """True once the job must stop; LeaseLost once another attempt owns it."""
        self.step += 1
        self.keeper.check()
        if time.monotonic() >= self.deadline:
            self._timed_out = True
        return self.stop_reason is not None

    def resumed(self, resume: Resume) -> None:
        """Carry on from a checkpoint. Its epoch's metrics are recorded if they are missing
        (lost after the pointer was committed: an operator's cleanup, a restored backup)."""
        self.epoch, self.step = resume.epoch, resume.step
        self.reports[resume.epoch] = resume.report
        self.event("resumed", f"resumed from the checkpoint of epoch {resume.epoch}")
        with session_scope() as session:
            if not job_state.epoch_metrics(session, self.claim.job_id, resume.epoch):
                self._record(session, resume.epoch, resume.step, resume.metrics, resume.report)

    def on_epoch_end(self, result: EpochResult) -> None:
        self.epoch, self.step = result.epoch, result.step
        self.samples_per_s = round(result.samples_per_s, 1)
        self.reports[result.epoch] = result.report
        self.keeper.check()  # a stale attempt writes no checkpoint
        # The checkpoint's object first, then its pointer and the epoch's metrics in one
        # fenced transaction: an attempt killed before the commit leaves an object no row
        # names (never read; the next attempt redoes the epoch), never a pointer to nothing.
        self.ckpts.save(result.epoch, result.step, self.state, result.metrics, result.report)
        if self.keep_best and result.is_best:
            self.ckpts.save_best(result.epoch, self.state.model, result.report)
        with session_scope() as session:
            self._record(
                session, result.epoch, result.step, result.metrics, result.report, commit=True
            )
            job_state.add_event(
                session,
                self.claim.job_id,
                self.claim.attempt,
                "checkpoint",
                f"checkpoint at epoch {result.epoch}",
            )
        self.ckpts.committed()

    def _record(
        self,
        session: Any,
        epoch: int,
        step: int,
        metrics: dict[str, float],
        report: dict[str, Any],
        *,
        commit: bool = False,
    ) -> None:
        """commit: the checkpoints this epoch stored become the job's pointers."""
        job_state.record_epoch(
            session,
            self.claim.job_id,
            self.claim.attempt,
            epoch,
            step,
            metrics,
            {"epoch": epoch, "validation": report},
            self.progress(),
            checkpoints=self.ckpts.recorded if commit else None,
        )

    def event(self, kind: str, message: str) -> None:
        """LeaseLost once another attempt owns the job (job_state.attempt_event)."""
        with session_scope() as session:
            job_state.attempt_event(session, self.claim.job_id, self.claim.attempt, kind, message)
