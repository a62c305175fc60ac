"""`trainserve --help` and every group's help list each command with its whole first line:
click cuts a summary at its first sentence or at the width, so each docstring's first line
must be a sentence that fits."""

import os
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from app.cli import main
from app.core.version import VERSION

WIDTH = 120  # main's max_content_width


@pytest.fixture(autouse=True)
def keep_umask() -> Iterator[None]:
    """main() sets the service's umask; the test process keeps its own."""
    umask = os.umask(0o077)
    os.umask(umask)
    yield
    os.umask(umask)


def commands(group: click.Group, prefix: str = "trainserve") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in sorted(group.commands.items()):
        found.append((f"{prefix} {name}", command))
        if isinstance(command, click.Group):
            found += commands(command, f"{prefix} {name}")
    return found


def test_no_command_summary_is_cut() -> None:
    for path, command in commands(main):
        summary = command.get_short_help_str(limit=WIDTH)
        first_line = (command.help or "").strip().splitlines()[0]
        assert summary == first_line.strip(), path
        assert not summary.endswith("..."), path


def test_every_client_group_lists_its_commands() -> None:
    runner = CliRunner()
    expected = {
        "jobs": {"submit", "follow", "wait", "list", "show", "cancel", "events"},
        "datasets": {"upload", "list", "show"},
        "models": {"list", "show", "alias", "predict"},
        "keys": {"create", "list", "revoke"},
    }
    for group, names in expected.items():
        result = runner.invoke(main, [group, "--help"], terminal_width=WIDTH)
        assert result.exit_code == 0, result.output
        listed = result.output.split("Commands:")[1]
        assert {line.split()[0] for line in listed.strip().splitlines()} == names


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and VERSION in result.output
