"""The `trainserve` commands that talk to a running API through trainserve_client: jobs,
datasets, models and keys. Light on purpose: no torch, web framework or server internals at
import time (`.importlinter` holds them to it), so they start fast."""

import click

from app.cli_client.jobs import jobs
from app.cli_client.keys import keys
from app.cli_client.resources import datasets, models


def register(main: click.Group) -> None:
    for group in (jobs, datasets, models, keys):
        main.add_command(group)
