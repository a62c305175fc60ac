"""Why a running attempt stops before its last epoch, and where each reason comes from.

The loop only learns "stop" (a step hook returned True, so it raises StopRequested after that
step); the runner then asks the Reporter which reason it was and acts on it:

- CANCEL: the job row's cancel_requested, read by the lease renewal → the job is cancelled.
- DRAIN: this node's row in `workers` says draining (worker/node.py, on SIGTERM), read by
  the same renewal → the job goes back to the queue and resumes from its last checkpoint.
- TIMEOUT: the job's max_runtime_s ran out, seen by the Reporter's step hook → it fails.
"""

from enum import StrEnum


class StopReason(StrEnum):
    CANCEL = "cancel"
    DRAIN = "drain"
    TIMEOUT = "timeout"
