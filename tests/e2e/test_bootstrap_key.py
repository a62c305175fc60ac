"""TRAINSERVE_API_KEY is read on every start: a revoked one must stay revoked across restarts
(a leaked key revoked by an operator would otherwise come back with the next deploy)."""

import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support import BIN, Proc, base_env, free_port, wait_http_ok

WARNING = "stays revoked"


@contextmanager
def running(args: list[str], env: dict[str, str], log: Path) -> Iterator[tuple[str, Proc]]:
    port = free_port()
    proc = Proc([str(BIN), *args, "--port", str(port)], env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{url}/readyz", proc)
        yield url, proc
    finally:
        proc.stop()


def status(url: str, key: str) -> int:
    response = httpx.get(f"{url}/v1/jobs", headers={"Authorization": f"Bearer {key}"})
    return response.status_code


def cli(env: dict[str, str], *args: str) -> str:
    """`trainserve keys ... --database`: the operator's path, straight to the database."""
    done = subprocess.run(
        [str(BIN), "keys", *args, "--database"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_revoked_bootstrap_key_stays_revoked_after_a_restart(tmp_path: Path) -> None:
    bootstrap = f"ts_{secrets.token_urlsafe(24)}"
    env = base_env(data_dir=str(tmp_path / "data"), api_key=bootstrap)
    with running(["api"], env, tmp_path / "api-1.log") as (url, _):
        admin = {"Authorization": f"Bearer {bootstrap}"}
        made = httpx.post(
            f"{url}/v1/keys", json={"name": "second admin", "scopes": ["admin"]}, headers=admin
        )
        assert made.status_code == 201, made.text
        second = made.json()["key"]
        listed = httpx.get(f"{url}/v1/keys", headers=admin).json()["items"]
        bootstrap_id = next(k["id"] for k in listed if bootstrap.startswith(k["prefix"]))
        revoked = httpx.delete(
            f"{url}/v1/keys/{bootstrap_id}", headers={"Authorization": f"Bearer {second}"}
        )
        assert revoked.status_code == 204, revoked.text
        assert status(url, bootstrap) == 401
    for attempt in (2, 3):  # the same environment, started again (twice: nothing accumulates)
        with running(["api"], env, tmp_path / f"api-{attempt}.log") as (url, proc):
            assert status(url, bootstrap) == 401
            assert status(url, second) == 200
            log = proc.output()
            assert WARNING in log and bootstrap_id in log, log
            assert bootstrap not in log  # the warning names the key, never its secret


def test_up_starts_with_its_only_key_revoked_and_says_how_to_make_one(tmp_path: Path) -> None:
    bootstrap = f"ts_{secrets.token_urlsafe(24)}"
    env = base_env(data_dir=str(tmp_path / "data"), api_key=bootstrap)
    up = ["up", "--workers", "0"]
    with running(up, env, tmp_path / "up-1.log") as (url, _):
        assert status(url, bootstrap) == 200
    key_id = cli(env, "list").split()[0]
    cli(env, "revoke", key_id)
    with running(up, env, tmp_path / "up-2.log") as (url, proc):
        assert status(url, bootstrap) == 401
        log = proc.output()
        assert WARNING in log and "trainserve keys create --database" in log, log
        new_key = cli(env, "create", "--name", "admin").strip()  # what the warning says to do
        assert status(url, new_key) == 200
