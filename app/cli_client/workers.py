"""`trainserve workers list`: the worker nodes, their pools, devices and running jobs."""

import click

from app.cli_client.output import emit_json, table, when
from app.cli_client.target import Target, client_command


@click.group()
def workers() -> None:
    """Worker nodes (an admin key's): pools, devices, capacity, what each runs."""


@client_command(workers, "list", project=False)
@click.option("--pool", help="only this pool's workers ('default': the default pool)")
def list_workers(target: Target, pool: str | None) -> None:
    """List workers: id, pool, state, devices, running / capacity, last heartbeat."""
    with target.client() as client:
        found = list(client.workers.list(pool))
    if target.json:
        emit_json(found)
        return
    table(
        ("ID", "POOL", "STATE", "DEVICES", "RUNNING", "LAST SEEN"),
        (
            [
                w["id"],
                w["pool"],
                w["state"],
                ", ".join(w["devices"]) or "-",
                f"{len(w['running'])}/{w['capacity']} {' '.join(w['running'])}".strip(),
                when(w["last_seen"]),
            ]
            for w in found
        ),
    )
