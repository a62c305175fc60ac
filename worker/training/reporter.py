"""Turns loop callbacks into job-row writes: lease renewals, progress, checkpoints, metrics,
and the reasons to stop early: a cancel, a draining worker, the job's time limit."""

import os
import socket
import time
from typing import Any

from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.db import session_scope
from app.models.base import utcnow
from app.services import job_state
from app.services.job_state import Claim
from worker.training.checkpoints import CheckpointDir, TrainingState
from worker.training.loop import EpochResult

CANCEL, DRAIN, TIMEOUT = "cancel", "drain", "timeout"


class Reporter:
    def __init__(
        self,
        claim: Claim,
        settings: Settings,
        epochs: int,
        ckpts: CheckpointDir,
        state: TrainingState,
        keep_best: bool,
        max_runtime_s: float,
    ) -> None:
        self.claim, self.settings, self.ckpts, self.state = claim, settings, ckpts, state
        self.keep_best = keep_best
        self.epoch, self.step, self.epochs = 0, 0, epochs
        self.samples_per_s: float | None = None
        self.history: dict[int, dict[str, float]] = {}  # epoch → metrics
        self.reports: dict[int, dict[str, Any]] = {}  # epoch → confusion matrix, per class
        self.stop_reason: str | None = None
        # the pool child's parent is the worker process whose row says whether it drains
        self.node_id = f"{socket.gethostname()}:{os.getppid()}"
        elapsed = (utcnow() - claim.started_at).total_seconds()  # earlier attempts count too
        self.deadline = time.monotonic() + max_runtime_s - elapsed
        self.max_runtime_s = max_runtime_s
        self._next_beat = 0.0

    def progress(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "epochs": self.epochs,
            "step": self.step,
            "samples_per_s": self.samples_per_s,
        }

    def on_step(self, rows: int) -> bool:
        """Renew the lease about once per heartbeat_s; True once the job must stop."""
        self.step += 1
        now = time.monotonic()
        if self.stop_reason is None and now >= self.deadline:
            self.stop_reason = TIMEOUT
        if self.stop_reason is None and now >= self._next_beat:
            with session_scope() as session:
                self._beat(session)
        return self.stop_reason is not None

    def on_epoch_end(self, result: EpochResult) -> None:
        self.epoch, self.step = result.epoch, result.step
        self.samples_per_s = round(result.samples_per_s, 1)
        self.history[result.epoch], self.reports[result.epoch] = result.metrics, result.report
        with session_scope() as session:
            self._beat(session)  # LeaseLost here: a stale attempt writes no checkpoint
        self.ckpts.save(result.epoch, result.step, self.state)
        if self.keep_best and result.is_best:
            self.ckpts.save_best(result.epoch, self.state.model)
        with session_scope() as session:
            job_state.record_epoch(
                session,
                self.claim.job_id,
                self.claim.attempt,
                result.epoch,
                result.step,
                result.metrics,
                {"epoch": result.epoch, "validation": result.report},
            )
            job_state.add_event(
                session,
                self.claim.job_id,
                self.claim.attempt,
                "checkpoint",
                f"checkpoint at epoch {result.epoch}",
            )

    def event(self, kind: str, message: str) -> None:
        with session_scope() as session:
            job_state.add_event(session, self.claim.job_id, self.claim.attempt, kind, message)

    def _beat(self, session: Session) -> None:
        control = job_state.heartbeat(
            session,
            self.claim.job_id,
            self.claim.attempt,
            self.settings.lease_s,
            self.progress(),
            self.node_id,
        )
        if control.cancel_requested:
            self.stop_reason = CANCEL
        elif control.draining:
            self.stop_reason = DRAIN
        self._next_beat = time.monotonic() + self.settings.heartbeat_s
