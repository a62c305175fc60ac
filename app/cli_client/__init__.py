"""The `trainserve` commands that talk to a running API through trainserve_client: jobs,
datasets, models, keys and workers. Light on purpose: no torch, web framework or server internals at
import time (`.importlinter` holds them to it), so they start fast."""

import click

from app.cli_client.jobs import jobs
from app.cli_client.keys import keys
from app.cli_client.resources import datasets, models
from app.cli_client.workers import workers


def register(main: click.Group) -> None:
    for group in (jobs, datasets, models, keys, workers):
        main.add_command(group)
