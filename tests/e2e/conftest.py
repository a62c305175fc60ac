"""The whole stack as a user starts it: `trainserve up` (embedded), or db upgrade + api + worker
as separate processes on PostgreSQL and Redis."""

import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from tests.support import (
    BIN,
    REDIS_URL,
    Api,
    Proc,
    Served,
    api_and_worker,
    base_env,
    free_port,
    pg_database,
    wait_http_ok,
)


@dataclass
class Stack:
    base_url: str
    key: str
    data_dir: Path
    env: dict[str, str]
    procs: dict[str, Proc] = field(default_factory=dict)

    def api(self) -> Api:
        return Api(self.base_url, self.key)

    def logs(self) -> str:
        return "\n".join(f"--- {name} ---\n{p.output()[-6000:]}" for name, p in self.procs.items())


@pytest.fixture(scope="module")
def embedded_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`trainserve up` with no configuration at all, in a fresh directory."""
    workdir = tmp_path_factory.mktemp("embedded")
    port = free_port()
    proc = Proc(
        [str(BIN), "up", "--port", str(port), "--workers", "1"],
        base_env(),
        workdir / "up.log",
        cwd=workdir,
    )
    stack = Stack(f"http://127.0.0.1:{port}", "", workdir / ".trainserve", base_env(), {"up": proc})
    try:
        wait_http_ok(f"{stack.base_url}/readyz", proc)
        match = re.search(r"admin API key \(shown once.*?\n\s+(ts_\S+)", proc.output())
        assert match, f"`trainserve up` printed no admin key:\n{proc.output()}"
        stack.key = match.group(1)
        yield stack
    finally:
        proc.stop()
        print(stack.logs())


@pytest.fixture(scope="module")
def pg_redis_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`trainserve db upgrade`, `trainserve api` and `trainserve worker`, each its own process."""
    workdir = tmp_path_factory.mktemp("pg_redis")
    queue = f"trainserve-test-{secrets.token_hex(4)}"
    with pg_database() as db_url:
        env = base_env(
            database_url=db_url,
            broker_url=REDIS_URL,
            data_dir=str(workdir / "data"),
            api_key=f"ts_{secrets.token_urlsafe(24)}",
            queue_name=queue,
            lease_s="20",
        )
        subprocess.run(
            [str(BIN), "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120
        )
        port = free_port()
        stack = Stack(f"http://127.0.0.1:{port}", env["TRAINSERVE_API_KEY"], workdir / "data", env)
        stack.procs["api"] = Proc([str(BIN), "api", "--port", str(port)], env, workdir / "api.log")
        stack.procs["worker"] = Proc([str(BIN), "worker"], env, workdir / "worker.log")
        try:
            wait_http_ok(f"{stack.base_url}/readyz", stack.procs["api"])
            yield stack
        finally:
            for proc in stack.procs.values():
                proc.stop()
            print(stack.logs())
            client = redis.Redis.from_url(REDIS_URL)
            for key in client.scan_iter(f"*{queue}*"):
                client.delete(key)


@dataclass
class CliStack:
    """`trainserve api` and `trainserve worker` on their own database and queue, for the CLI's
    client commands: `spawn` runs the `trainserve` command as a user's shell would, `run` the
    same command in this process (click's runner: no interpreter start-up per call)."""

    url: str
    key: str
    server_env: dict[str, str]  # the server's settings (the keys --database path needs them)
    workdir: Path
    served: Served

    def client_env(self, **extra: str) -> dict[str, str]:
        """A client's environment: the API's URL and key, none of the server's settings."""
        return base_env() | {"TRAINSERVE_URL": self.url, "TRAINSERVE_KEY": self.key} | extra

    def run(
        self, *args: str, input: str | None = None, env: dict[str, str | None] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`env` is laid over the API's URL and key (None: the variable unset)."""
        from click.testing import CliRunner

        from app.cli import main

        umask = os.umask(0o077)  # main sets the service's umask: this process keeps its own
        try:
            variables = {"TRAINSERVE_URL": self.url, "TRAINSERVE_KEY": self.key} | (env or {})
            result = CliRunner().invoke(main, list(args), input=input, env=variables)
        finally:
            os.umask(umask)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception  # a traceback the user would have seen
        return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)

    def spawn(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        input: str | None = None,
        cwd: Path | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN), *args],
            env=self.client_env() if env is None else env,
            input=input,
            cwd=cwd or self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def api(self) -> Api:
        return Api(self.url, self.key)

    def logs(self) -> str:
        return self.served.logs()


@pytest.fixture(scope="package")
def cli_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliStack]:
    workdir = tmp_path_factory.mktemp("cli-stack")
    key = f"ts_{secrets.token_urlsafe(24)}"
    with api_and_worker(workdir, key) as served:
        yield CliStack(served.url, key, served.env, workdir, served)
