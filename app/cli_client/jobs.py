"""`trainserve jobs ...`: submit, follow, wait, list, show, cancel, events."""

import itertools
import sys
from typing import IO, Any

import click
from trainserve_client import Client
from trainserve_client.types import Job, JobDetail

from app.cli_client.live import EXIT_INTERRUPTED, event_line, exit_code, follow, wait_quietly
from app.cli_client.output import (
    console,
    emit_json,
    emit_json_line,
    fields,
    metrics_text,
    table,
    when,
)
from app.cli_client.target import Target, client_command, read_json

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


@click.group()
def jobs() -> None:
    """Training jobs: submit a spec, follow it live, list, show, cancel."""


@client_command(jobs, "submit")
@click.argument("spec_file", metavar="SPEC", type=click.File("r"))
@click.option("--follow", "-f", is_flag=True, help="show the job live until it ends")
@click.option(
    "--idempotency-key",
    help="send a retry with the same key to get the same job (default: a new one)",
)
def submit(target: Target, spec_file: IO[str], follow: bool, idempotency_key: str | None) -> None:
    """Submit the job spec in SPEC (a JSON file, or - for stdin).

    Prints the job's id (text) or the queued job (json). With --follow: a progress bar per
    epoch with its metrics and events until the job ends (json: the finished job).

    Exit status with --follow: 0 when the job succeeded, 1 when it failed (or on an error),
    3 when it was cancelled, 130 when Ctrl-C stopped following (the job goes on).
    """
    spec = read_json(spec_file.read(), "SPEC")
    if not isinstance(spec, dict):
        raise click.BadParameter("a job spec is a JSON object", param_hint="SPEC")
    with target.client() as client:
        job = client.jobs.submit(spec, idempotency_key)
        if not follow:
            if target.json:
                emit_json(job)
            else:
                click.echo(job["id"])
                click.echo(f"follow it with: trainserve jobs follow {job['id']}", err=True)
            return
        _follow_and_exit(target, client, job)


@client_command(jobs, "follow")
@click.argument("job_id")
def follow_command(target: Target, job_id: str) -> None:
    """Show a job live until it ends (the view of `submit --follow`).

    Exit status: 0 when the job succeeded, 1 when it failed (or on an error), 3 when it was
    cancelled, 130 when Ctrl-C stopped following (the job goes on).
    """
    with target.client() as client:
        _follow_and_exit(target, client, client.jobs.get(job_id))


def _follow_and_exit(target: Target, client: Client, job: Job) -> None:
    try:
        if target.json:
            status = wait_quietly(client, job["id"])
            emit_json(client.jobs.get(job["id"]))
        else:
            status = follow(client, target.client, job, console())
            _say_how_it_ended(client.jobs.get(job["id"]))
    except KeyboardInterrupt:
        click.echo(
            f"\nstopped following job {job['id']}; it goes on. Follow it again with: "
            f"trainserve jobs follow {job['id']} (cancel it with: trainserve jobs cancel "
            f"{job['id']})",
            err=True,
        )
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(exit_code(status))


def _say_how_it_ended(job: JobDetail) -> None:
    line = f"job {job['id']} {job['status']}"
    if job["status"] == "succeeded":
        line += f": model {job['model_name']} version {job['model_version']}"
    elif job.get("status_message"):
        line += f": {job['status_message']}"
    if job["metrics"]:
        line += f"  ({metrics_text(job['metrics'], most=3)})"
    console().print(line, markup=False)


@client_command(jobs, "wait")
@click.argument("job_id")
@click.option("--timeout", type=click.FloatRange(min=0), help="seconds; default: no limit")
def wait(target: Target, job_id: str, timeout: float | None) -> None:
    """Wait for a job to end and print it.

    Exit status: 0 when the job succeeded, 1 when it failed (or on an error, or the timeout),
    3 when it was cancelled, 130 on Ctrl-C (the job goes on).
    """
    with target.client() as client:
        try:
            job = client.jobs.wait(job_id, timeout)
        except KeyboardInterrupt:
            sys.exit(EXIT_INTERRUPTED)
        except TimeoutError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
    if target.json:
        emit_json(job)
    else:
        _say_how_it_ended(job)
    sys.exit(exit_code(job["status"]))


@client_command(jobs, "list")
@click.option("--status", type=click.Choice(STATUSES), help="only jobs in this status")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1))
def list_jobs(target: Target, status: str | None, limit: int) -> None:
    """List jobs, newest first (json: an array of the API's jobs)."""
    with target.client() as client:
        found = list(itertools.islice(client.jobs.list(status, page_size=min(limit, 200)), limit))
    if target.json:
        emit_json(found)
        return
    table(
        ("ID", "MODEL", "STATUS", "EPOCH", "VERSION", "CREATED", "METRICS"),
        (
            (
                j["id"],
                j["model_name"],
                j["status"],
                _epochs(j),
                j["model_version"],
                when(j["created_at"]),
                metrics_text(j["metrics"] or {}, most=3),
            )
            for j in found
        ),
    )


def _epochs(job: Job) -> str:
    progress: dict[str, Any] = dict(job["progress"] or {})
    epochs = progress.get("epochs") or job["spec"].get("training", {}).get("epochs", "?")
    return f"{progress.get('epoch', 0)}/{epochs}"


@client_command(jobs, "show")
@click.argument("job_id")
def show(target: Target, job_id: str) -> None:
    """Show a job: status, progress, metrics, and its history."""
    with target.client() as client:
        job = client.jobs.get(job_id)
    if target.json:
        emit_json(job)
        return
    progress: dict[str, Any] = dict(job["progress"] or {})
    fields(
        [
            ("id", job["id"]),
            ("model", job["model_name"]),
            ("status", job["status"]),
            ("message", job["status_message"]),
            ("attempt", job["attempt"]),
            ("epoch", _epochs(job)),
            ("samples/s", _rate(progress.get("samples_per_s"))),
            ("metrics", metrics_text(job["metrics"] or {}) or None),
            ("model version", job["model_version"]),
            ("created", when(job["created_at"])),
            ("started", when(job["started_at"])),
            ("finished", when(job["finished_at"])),
            ("spec", job["spec"]),
        ]
    )
    if job.get("events"):
        click.echo("history:")
        table(
            ("TIME", "ATTEMPT", "KIND", "MESSAGE"),
            ((when(e["time"]), e["attempt"], e["kind"], e["message"]) for e in job["events"]),
        )


def _rate(samples_per_s: float | None) -> str | None:
    return None if samples_per_s is None else f"{samples_per_s:,.0f}"


@client_command(jobs, "cancel")
@click.argument("job_id")
def cancel(target: Target, job_id: str) -> None:
    """Cancel a job: a queued one at once, a running one at its next step."""
    with target.client() as client:
        job = client.jobs.cancel(job_id)
    if target.json:
        emit_json(job)
    else:
        click.echo(f"cancel requested: job {job['id']} is {job['status']}")


@client_command(jobs, "events")
@click.argument("job_id")
def events(target: Target, job_id: str) -> None:
    """Print a job's events as they come (its history first), until it ends.

    json: one JSON object per line, {"id", "event", "data"} as the stream sent it.
    """
    with target.client() as client:
        try:
            for event in client.jobs.events(job_id):
                if target.json:
                    emit_json_line(event)
                else:
                    click.echo(event_line(event))
        except KeyboardInterrupt:
            sys.exit(EXIT_INTERRUPTED)
