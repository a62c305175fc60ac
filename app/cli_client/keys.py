"""`trainserve keys ...`: API keys, over the API with an admin key, or with --database straight
in the database the server's settings name (the operator's path: the first key of an
install, or a new one when every key is revoked; no API needed)."""

from typing import Any

import click

from app.cli_client.output import emit_json
from app.cli_client.target import Failure, Target, client_command
from app.schemas.key import Scope

DATABASE_HELP = "act on the database of the server's settings (TRAINSERVE_*) instead of the API"
NO_API_HINT = "or, on the server's host, use --database to manage keys in its database directly"


@click.group()
def keys() -> None:
    """API keys (an admin key's; --database: the operator's path, without the API)."""


def key_line(key: dict[str, Any]) -> str:
    revoked = key.get("revoked_at")
    state = f"revoked {str(revoked)[:10]}" if revoked else "active"
    scopes = ",".join(key["scopes"])
    return f"{key['id']}  {key['prefix']}…  {key['project']}  {scopes}  {key['name']}  ({state})"


def _from_database(row: Any) -> dict[str, Any]:
    """A key row as the API shows it."""
    from app.schemas.key import KeyPublic

    return KeyPublic.model_validate(row).model_dump(mode="json")


@client_command(keys, "create", project=False, unreachable_hints=(NO_API_HINT,))
@click.option("--name", help="default: the server names it after its project and scopes")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    default=["admin"],
    show_default=True,
    type=click.Choice([s.value for s in Scope]),
)
@click.option("--project", default="default", show_default=True, help="the key's project")
@click.option("--database", is_flag=True, help=DATABASE_HELP)
def create(
    target: Target, name: str | None, scopes: tuple[str, ...], project: str, database: bool
) -> None:
    """Create a key and print its secret, this once.

    Text output is the secret alone, for KEY=$(trainserve keys create ...); json is the API's
    answer, the secret in its `key`."""
    if database:
        from app.core.db import session_scope
        from app.services.auth import create_key

        with session_scope() as session:
            row, plaintext = create_key(session, name, list(scopes), project)
            created = {**_from_database(row), "key": plaintext}
    else:
        with target.client() as client:
            created = dict(client.keys.create(name, list(scopes), project))
    if target.json:
        emit_json(created)
    else:
        click.echo(created["key"])


@client_command(keys, "list", project=False, unreachable_hints=(NO_API_HINT,))
@click.option("--database", is_flag=True, help=DATABASE_HELP)
def list_keys(target: Target, database: bool) -> None:
    """List keys, never their secrets: id, prefix, project, scopes, name, state."""
    if database:
        from app.core.db import session_scope
        from app.services.auth import list_keys as listed

        with session_scope() as session:
            rows, cursor = listed(session, 200, None)
            while cursor:
                page, cursor = listed(session, 200, cursor)
                rows += page
            found = [_from_database(row) for row in rows]
    else:
        with target.client() as client:
            found = [dict(k) for k in client.keys.list()]
    if target.json:
        emit_json(found)
        return
    for key in found:
        click.echo(key_line(key))


@client_command(keys, "revoke", project=False, unreachable_hints=(NO_API_HINT,))
@click.argument("key_id")
@click.option("--database", is_flag=True, help=DATABASE_HELP)
def revoke(target: Target, key_id: str, database: bool) -> None:
    """Revoke a key; it stops working at once.

    With --output json it prints nothing: the API answers 204, without a body."""
    if database:
        from app.core.db import session_scope
        from app.core.errors import NotFound
        from app.services.auth import revoke_key

        try:
            with session_scope() as session:
                revoke_key(session, key_id)
        except NotFound as exc:
            raise Failure(f"{exc.code}: {exc.message}") from None
    else:
        with target.client() as client:
            client.keys.revoke(key_id)
    if not target.json:
        click.echo(f"revoked {key_id}")
