"""The client tier: trainserve_client (installed from clients/python, as a user's install
would be) against a real stack: `trainserve api` on a socket and `trainserve worker`, on their
own PostgreSQL database and Redis queue, for this folder's tests."""

from collections.abc import Iterator
from typing import Any

import pytest
from trainserve_client import Client

from tests.integration.conftest import ADMIN_KEY
from tests.support import Served, api_and_worker, seed_spec

Stack = Served


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with api_and_worker(tmp_path_factory.mktemp("client-stack"), ADMIN_KEY) as served:
        yield served


@pytest.fixture(scope="package")
def client(stack: Stack) -> Iterator[Client]:
    with Client(stack.url, ADMIN_KEY) as ts:
        yield ts


@pytest.fixture(scope="package")
def trained(client: Client, stack: Stack) -> dict[str, Any]:
    """A seed job on digits, trained by the real worker: model client-digits, version 1."""
    job = client.jobs.submit(seed_spec("client-digits", epochs=3))
    done = client.jobs.wait(job["id"], timeout=120)
    assert done["status"] == "succeeded", (done, stack.logs())
    return dict(done)
