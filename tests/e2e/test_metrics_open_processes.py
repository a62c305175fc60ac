"""An open /metrics (TRAINSERVE_METRICS_OPEN) under `trainserve api --processes N`: no key
asked, every process's traffic counted, and no project's model named (prometheus_client's
multiprocess files hold the per-model series; they are summed when read)."""

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_api_processes import settings_for
from tests.support import BIN, Proc, base_env, fixed_model, free_port, wait_http_ok, wait_until

PROCESSES = 2
REQUESTS = 20


@pytest.fixture(scope="module")
def open_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    data_dir = tmp_path_factory.mktemp("open-metrics") / "data"
    key = f"ts_{secrets.token_urlsafe(24)}"
    env = base_env(data_dir=str(data_dir), api_key=key, metrics_open="true")
    port = free_port()
    args = [str(BIN), "api", "--port", str(port), "--processes", str(PROCESSES)]
    proc = Proc(args, env, data_dir.parent / "api.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{url}/readyz", proc)
        wait_until(
            lambda: proc.output().count("Application startup complete") == PROCESSES,
            60,
            f"{PROCESSES} API processes to start",
        )
        yield url, key, data_dir
    finally:
        proc.stop()
        print(proc.output()[-6000:])


def test_open_metrics_count_every_process_and_name_no_tenant(
    open_service: tuple[str, str, Path],
) -> None:
    url, key, data_dir = open_service
    names = [f"secret-{secrets.token_hex(4)}" for _ in range(2)]
    with settings_for(data_dir):
        for name, project in zip(names, ("tenant-one", "tenant-two"), strict=True):
            fixed_model(name, data_dir, project=project)
    projects = ("tenant-one", "tenant-two")
    for i in range(REQUESTS):
        predict = f"{url}/v1/models/{names[i % 2]}/predict"
        headers = {"Authorization": f"Bearer {key}", "X-Trainserve-Project": projects[i % 2]}
        # a new connection each time, so the kernel hands requests to different processes
        response = httpx.post(predict, headers=headers, json={"inputs": [[1, 0]]})
        assert response.status_code == 200, response.text
    for _ in range(4):  # whichever process answers, without a key
        response = httpx.get(f"{url}/metrics")
        assert response.status_code == 200, response.text
        body = response.text
        assert f'trainserve_predict_requests_total{{status="200"}} {REQUESTS:.1f}' in body, body
        assert not any(n in body for n in (*names, "tenant-one", "tenant-two")), body
        assert not re.search(r'\b(model|project)="', body)
