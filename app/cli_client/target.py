"""What every client command shares: which API it talks to, with which key, in which project,
and how it prints; and how the client's errors become one line on stderr and exit code 1.

Where the API is, in order: --url, TRAINSERVE_URL, DATA_DIR/api.url (written by `trainserve up`
and `trainserve api` while they listen), http://127.0.0.1:8000. The key: --key,
TRAINSERVE_KEY, DATA_DIR/admin.key (written by `trainserve up` on a fresh install).
"""

import functools
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import click
import httpx
from trainserve_client import Client, TrainserveError

from app.core.config import Settings

DEFAULT_URL = "http://127.0.0.1:8000"
URL_FILE = "api.url"
KEY_FILE = "admin.key"
OUTPUTS = ("text", "json")


def data_dir() -> Path:
    """The data dir the server would use here (TRAINSERVE_DATA_DIR or Settings' default),
    read without validating the rest of the server's settings: a client needs none of them."""
    default = Settings.model_fields["data_dir"].default
    return Path(os.environ.get("TRAINSERVE_DATA_DIR") or default)


def _read_file(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return None


@dataclass(frozen=True)
class Target:
    url: str
    url_from: str  # where the URL came from, for the message when it cannot be reached
    key: str | None
    key_from: str
    project: str | None
    output: str

    @property
    def json(self) -> bool:
        return self.output == "json"

    def client(self) -> Client:
        # "" rather than None: the client would read TRAINSERVE_KEY itself, already read here.
        return Client(self.url, self.key or "", project=self.project)


def resolve(url: str | None, key: str | None, project: str | None, output: str) -> Target:
    folder = data_dir()
    url_from = "--url or TRAINSERVE_URL"
    if url is None:
        url = _read_file(folder / URL_FILE)
        url_from = f"read from {folder / URL_FILE}"
    if url is None:
        url, url_from = DEFAULT_URL, "the default"
    key_from = "--key or TRAINSERVE_KEY"
    if key is None:
        key = _read_file(folder / KEY_FILE)
        key_from = f"read from {folder / KEY_FILE}" if key else "none given"
    return Target(url, url_from, key, key_from, project, output)


class Failure(click.ClickException):
    """An expected failure: `error: <message>` and hints on stderr, exit code 1, no traceback."""

    exit_code = 1

    def __init__(self, message: str, hints: list[str] | None = None) -> None:
        super().__init__(message)
        self.hints = hints or []

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.message}", err=True)
        for hint in self.hints:
            click.echo(f"  {hint}", err=True)


def api_failure(exc: TrainserveError, target: Target) -> Failure:
    hints = [line for line in _detail_lines(exc.details) if line != exc.message]
    if exc.status == 401:
        hints.append(f"key: {target.key_from}; pass --key or set TRAINSERVE_KEY")
    return Failure(f"{exc.code}: {exc.message}", hints)


def _detail_lines(details: Any) -> list[str]:
    """Each problem of the API's details ({field, message, type, ...}) as `field: message`,
    or its message alone when it is no one field's."""
    if not isinstance(details, list):
        return [] if details is None else [json.dumps(details, default=str)]
    return [
        f"{d['field']}: {d['message']}" if d.get("field") else str(d.get("message", d))
        for d in details
        if isinstance(d, dict)
    ]


def unreachable(exc: Exception, target: Target, extra_hints: list[str]) -> Failure:
    return Failure(
        f"cannot reach the API at {target.url} ({target.url_from}): {exc or type(exc).__name__}",
        [
            "start one with `trainserve up`, or point --url / TRAINSERVE_URL at a running API",
            *extra_hints,
        ],
    )


def client_command(
    group: click.Group,
    name: str,
    *,
    project: bool = True,
    unreachable_hints: tuple[str, ...] = (),
) -> Callable[[Callable[..., Any]], click.Command]:
    """A command of `group` that gets a Target first: the --url, --key, --output options (and
    --project unless it means something else to the command), and errors as Failures."""

    def decorate(fn: Callable[..., Any]) -> click.Command:
        @functools.wraps(fn)
        def run(url: str | None, key: str | None, output: str, **kwargs: Any) -> Any:
            target = resolve(url, key, kwargs.pop("act_in", None), output)
            try:
                return fn(target, **kwargs)
            except TrainserveError as exc:
                raise api_failure(exc, target) from None
            except (httpx.TransportError, ConnectionError) as exc:
                raise unreachable(exc, target, list(unreachable_hints)) from None

        command = run
        if project:
            command = click.option(
                "--project",
                "act_in",
                help="the project an admin key acts in (X-Trainserve-Project)",
            )(command)
        command = click.option(
            "--output",
            "-o",
            type=click.Choice(OUTPUTS),
            default="text",
            show_default=True,
            help="json: the API's JSON, for scripts",
        )(command)
        command = click.option(
            "--key",
            envvar="TRAINSERVE_KEY",
            show_envvar=True,
            help="API key (default: DATA_DIR/admin.key when there is one)",
        )(command)
        command = click.option(
            "--url",
            envvar="TRAINSERVE_URL",
            show_envvar=True,
            help=f"API URL (default: DATA_DIR/{URL_FILE} of a running `trainserve up`, "
            f"else {DEFAULT_URL})",
        )(command)
        return group.command(name)(command)

    return decorate


def read_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint=what) from None


def json_argument(value: str, what: str) -> Any:
    """JSON given inline, as @FILE, or as - (stdin)."""
    if value == "-":
        return read_json(sys.stdin.read(), what)
    if value.startswith("@"):
        try:
            return read_json(Path(value[1:]).read_text(), what)
        except OSError as exc:
            message = f"cannot read {value[1:]}: {exc.strerror}"
            raise click.BadParameter(message, param_hint=what) from None
    return read_json(value, what)
