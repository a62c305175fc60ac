"""The live view of a training job (`trainserve jobs submit --follow`, `jobs follow`): a
progress bar over the epochs, with the job's status, samples/s and latest metrics beside it,
and each status change, event and epoch's metrics printed above it as they arrive.

The event stream (GET /v1/jobs/{id}/events) drives it and says when the job has ended; a
thread reads the job's `progress` once a second besides, so the bar also moves inside an epoch.
"""

import threading
from collections.abc import Callable
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from trainserve_client import Client, TrainserveError
from trainserve_client.types import Job, JobEvent

from app.cli_client.output import metrics_text, when

# The exit code of a command that waited for a job: 0 only when it succeeded.
EXIT_CODES = {"succeeded": 0, "failed": 1, "cancelled": 3}
EXIT_INTERRUPTED = 130  # Ctrl-C: stopped following; the job goes on
POLL_S = 1.0


def exit_code(status: str) -> int:
    return EXIT_CODES.get(status, 1)


def event_line(event: JobEvent, most_metrics: int | None = None) -> str:
    """One message of a job's event stream as a line for a person."""
    data, kind = event["data"], event["event"]
    if kind == "metrics":
        metrics = metrics_text(data["metrics"], most_metrics)
        return f"epoch {data['epoch']}  step {data['step']}  {metrics}"
    if kind == "end":
        version = data.get("model_version")
        line = f"job ended: {data['status']}"
        if data.get("status_message"):
            line += f": {data['status_message']}"
        return line if version is None else f"{line} (model version {version})"
    label = data.get("status") or data.get("kind")
    return f"{when(data.get('time'))}  {label}: {data.get('message') or ''}".rstrip()


class LiveView:
    def __init__(self, job: Job, out: Console) -> None:
        self.job_id = job["id"]
        epochs = job["progress"].get("epochs") or job["spec"].get("training", {}).get("epochs")
        self.bar = Progress(
            TextColumn("[bold]{task.fields[status]}"),
            BarColumn(),
            TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[metrics]}"),
            console=out,
        )
        self.task = self.bar.add_task(
            "train", total=epochs or None, status=job["status"], epoch=0, epochs=epochs or "?"
        )
        self.bar.update(self.task, rate="", metrics="")
        self._epoch_end = (0, 0)  # (epoch, step) of the last epoch whose metrics came
        self.ended: dict[str, Any] | None = None

    def on_event(self, event: JobEvent) -> None:
        data, kind = event["data"], event["event"]
        if kind != "end":  # the command says how the job ended, once, after the bar
            self.bar.console.print(escape(event_line(event, most_metrics=4)))
        if kind == "status":
            self.bar.update(self.task, status=data["status"])
        elif kind == "metrics":
            self._epoch_end = (data["epoch"], data["step"])
            metrics = escape(metrics_text(data["metrics"], most=3))
            epoch = data["epoch"]
            self.bar.update(self.task, completed=epoch, epoch=epoch, metrics=metrics)
        elif kind == "end":
            self.ended = data
            self.bar.update(self.task, status=data["status"])
            if data["status"] == "succeeded":
                total = self.bar.tasks[0].total
                self.bar.update(self.task, completed=total, epoch=total or "?")

    def on_progress(self, progress: dict[str, Any]) -> None:
        """The job's progress as GET /v1/jobs/{id} shows it: the bar moves inside an epoch
        once one epoch's steps are known."""
        epochs, epoch, step = progress.get("epochs"), progress.get("epoch", 0), progress.get("step")
        if epochs:
            self.bar.update(self.task, total=epochs, epochs=epochs)
        done_epoch, done_step = self._epoch_end
        if step and done_epoch and epoch >= done_epoch:
            per_epoch = done_step / done_epoch
            inside = min((step - done_step) / per_epoch, 0.99) if per_epoch else 0.0
            self.bar.update(self.task, completed=done_epoch + max(inside, 0.0))
        rate = progress.get("samples_per_s")
        if rate:
            self.bar.update(self.task, rate=f"{rate:,.0f} samples/s")


class ProgressPoller:
    """GET /v1/jobs/{id} every POLL_S on a thread (a client of its own), for the bar only: the
    event stream is what tells the command how the job went, so a failed poll just stops."""

    def __init__(self, make_client: Callable[[], Client], job_id: str, view: LiveView) -> None:
        self._make_client, self._job_id, self._view = make_client, job_id, view
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "ProgressPoller":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2 * POLL_S)

    def _run(self) -> None:
        with self._make_client() as client:
            while not self._stop.wait(POLL_S):
                try:
                    job = client.jobs.get(self._job_id)
                except (TrainserveError, httpx.TransportError):
                    return  # the bar keeps what the event stream gives it
                self._view.on_progress(dict(job["progress"] or {}))


def follow(client: Client, make_client: Callable[[], Client], job: Job, out: Console) -> str:
    """Show the job live until it ends; its final status. Ctrl-C raises KeyboardInterrupt
    out of here with the bar stopped."""
    view = LiveView(job, out)
    with view.bar, ProgressPoller(make_client, job["id"], view):
        for event in client.jobs.events(job["id"]):
            view.on_event(event)
    if view.ended is None:
        raise ConnectionError(f"the event stream of job {job['id']} ended without its end")
    status = str(view.ended["status"])
    return status


def wait_quietly(client: Client, job_id: str) -> str:
    """The job's final status, from its event stream, printing nothing."""
    status = "failed"
    for event in client.jobs.events(job_id):
        if event["event"] == "end":
            status = str(event["data"]["status"])
    return status
