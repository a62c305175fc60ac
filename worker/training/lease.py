"""The lease of a running attempt, renewed from a thread of its own.

A lease renewed between training steps lapses whenever a step, a validation pass, data
loading or the final test and save takes longer than the lease: the reaper then takes a
healthy worker's job, and two workers train it. Like Celery's and Temporal's heartbeats,
this one does not depend on training progress: it renews every heartbeat_s for as long as
the process lives (torch releases the GIL while it computes), and the training thread only
reads what the last renewal learned — a cancel, a draining worker, or a lost lease.
"""

import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from app.core.config import Settings
from app.core.db import session_scope
from app.services import job_state
from app.services.job_state import Claim, LeaseLost
from worker.training.stop import StopReason

log = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(
        self,
        claim: Claim,
        settings: Settings,
        node_id: str,
        progress: Callable[[], dict[str, Any]] = dict,
    ) -> None:
        self.claim, self.settings, self.node_id = claim, settings, node_id
        self.progress = progress  # read on each renewal: what GET /v1/jobs/{id} shows
        self.stop_reason: StopReason | None = None  # CANCEL or DRAIN, once a renewal saw it
        self.lost = threading.Event()  # the job moved on without this attempt
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease", daemon=True)

    def __enter__(self) -> "LeaseKeeper":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def check(self) -> None:
        """Raise LeaseLost in the training thread once the lease is gone."""
        if self.lost.is_set():
            raise LeaseLost(self.claim.job_id)

    def renew(self) -> None:
        """One renewal. A database that does not answer is tried again at the next beat: the
        lease outlives several of them, and if it lapses the reaper is right to take it."""
        try:
            with session_scope() as session:
                control = job_state.heartbeat(
                    session,
                    self.claim.job_id,
                    self.claim.attempt,
                    self.settings.lease_s,
                    self.progress(),
                    self.node_id,
                )
        except LeaseLost:
            log.warning("job %s attempt %d lost its lease", self.claim.job_id, self.claim.attempt)
            self.lost.set()
            return
        except SQLAlchemyError as exc:
            log.warning("lease renewal of job %s failed: %s", self.claim.job_id, exc)
            return
        if control.cancel_requested:
            self.stop_reason = StopReason.CANCEL
        elif control.draining and self.stop_reason is None:
            self.stop_reason = StopReason.DRAIN  # this node is shutting down (worker/node.py)

    def _run(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_s) and not self.lost.is_set():
            self.renew()
