"""`trainserve api --processes N`: N API processes on one port, started at once on a fresh
embedded database, answering /metrics for all of them, and each seeing an alias move."""

import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from app.core import db
from app.core.config import get_settings
from tests.support import BIN, Proc, base_env, fixed_model, free_port, wait_http_ok, wait_until

PROCESSES = 3
CACHE_S = 0.5


@contextmanager
def settings_for(data_dir: Path) -> Iterator[None]:
    """This test process's Settings pointed at the service's embedded database."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("TRAINSERVE_")}
    for key in saved:
        del os.environ[key]
    os.environ["TRAINSERVE_DATA_DIR"] = str(data_dir)
    caches = (get_settings, db.get_engine, db.get_sessionmaker)
    for cache in caches:
        cache.cache_clear()
    try:
        yield
    finally:
        db.get_engine().dispose()
        del os.environ["TRAINSERVE_DATA_DIR"]
        os.environ.update(saved)
        for cache in caches:
            cache.cache_clear()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Proc]]:
    data_dir = tmp_path_factory.mktemp("processes") / "data"
    key = f"ts_{secrets.token_urlsafe(24)}"
    env = base_env(data_dir=str(data_dir), api_key=key, predict_cache_s=str(CACHE_S))
    port = free_port()
    args = [str(BIN), "api", "--port", str(port), "--processes", str(PROCESSES)]
    proc = Proc(args, env, data_dir.parent / "api.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{url}/readyz", proc)
        wait_until(
            lambda: len(re.findall(r"Application startup complete", proc.output())) == PROCESSES,
            60,
            f"{PROCESSES} API processes to start",
        )
        with settings_for(data_dir):
            for _ in range(2):
                fixed_model("shared", data_dir)
        yield url, key, proc
    finally:
        proc.stop()
        print(proc.output()[-6000:])


def fresh_connection(method: str, url: str, key: str, **kwargs: object) -> httpx.Response:
    """A new connection each time, so the kernel hands requests to different processes."""
    return httpx.request(method, url, headers={"Authorization": f"Bearer {key}"}, **kwargs)


def test_n_processes_start_together_on_a_fresh_embedded_database(
    service: tuple[str, str, Proc],
) -> None:
    _, _, proc = service
    pids = set(re.findall(r"Started server process \[(\d+)\]", proc.output()))
    assert len(pids) == PROCESSES
    assert "Traceback" not in proc.output()


def test_metrics_count_the_requests_of_every_process(service: tuple[str, str, Proc]) -> None:
    url, key, _ = service
    for _ in range(30):
        response = fresh_connection(
            "POST", f"{url}/v1/models/shared/predict", key, json={"inputs": [[1, 0]]}
        )
        assert response.status_code == 200, response.text
    line = 'trainserve_predict_requests_total{model="default/shared",status="200"} 30.0'
    for _ in range(6):  # whichever process answers, it counts all of them
        assert line in fresh_connection("GET", f"{url}/metrics", key).text


def test_an_alias_move_reaches_every_process_within_predict_cache_s(
    service: tuple[str, str, Proc],
) -> None:
    url, key, _ = service
    predict = f"{url}/v1/models/shared/predict"

    def versions(n: int) -> set[int]:
        return {
            fresh_connection("POST", predict, key, json={"inputs": [[1, 0]]}).json()[
                "model_version"
            ]
            for _ in range(n)
        }

    assert versions(12) == {2}
    moved = fresh_connection(
        "PUT", f"{url}/v1/models/shared/aliases/production", key, json={"version": 1}
    )
    assert moved.status_code == 200, moved.text
    wait_until(lambda: versions(12) == {1}, CACHE_S + 3, "every process to serve version 1")
