"""AsyncClient does what Client does, awaited: the same calls against the same stack
(each test runs its own event loop with asyncio.run)."""

import asyncio
import hashlib
import secrets
from typing import Any

import pytest
from trainserve_client import AsyncClient, AuthError, Client, NotFoundError, ValidationError

from tests.client.conftest import Stack
from tests.integration.conftest import ADMIN_KEY
from tests.support import held_out_digits, seed_spec

NAME = "client-digits"


def test_models_and_predict(stack: Stack, client: Client, trained: dict[str, Any]) -> None:
    rows = held_out_digits()[0][:5]

    async def main() -> None:
        async with AsyncClient(stack.url, ADMIN_KEY) as ts:
            assert NAME in {m["name"] async for m in ts.models.list()}
            assert (await ts.models.get(NAME))["versions"][0]["job_id"] == trained["id"]
            assert await ts.models.predict(NAME, rows, version=1) == client.models.predict(
                NAME, rows, version=1
            )
            data = await ts.models.artifact(NAME, 1)
            sha = (await ts.models.version(NAME, 1))["checkpoint_sha256"]
            assert hashlib.sha256(data).hexdigest() == sha

    asyncio.run(main())


def test_submit_wait_and_events(stack: Stack, client: Client) -> None:
    name, key = f"async-{secrets.token_hex(3)}", secrets.token_hex(8)

    async def main() -> tuple[dict[str, Any], list[Any], list[Any]]:
        async with AsyncClient(stack.url, ADMIN_KEY) as ts:
            sent = await asyncio.gather(
                *(ts.jobs.submit(seed_spec(name, epochs=2), idempotency_key=key) for _ in range(4))
            )
            assert len({job["id"] for job in sent}) == 1
            done = await ts.jobs.wait(sent[0]["id"], timeout=120)
            events = [m async for m in ts.jobs.events(done["id"])]
            listed = [j["id"] async for j in ts.jobs.list(page_size=1) if j["model_name"] == name]
            return dict(done), events, listed

    done, events, listed = asyncio.run(main())
    assert done["status"] == "succeeded", stack.logs()
    assert listed == [done["id"]]
    assert events == list(client.jobs.events(done["id"]))  # the sync client reads the same
    assert events[-1]["event"] == "end" and events[-1]["data"]["model_version"] == 1


def test_errors(stack: Stack) -> None:
    async def main() -> None:
        async with AsyncClient(stack.url, ADMIN_KEY) as ts:
            with pytest.raises(NotFoundError) as missing:
                await ts.jobs.get("no-such-job")
            assert missing.value.code == "not_found"
            with pytest.raises(ValidationError) as invalid:
                await ts.jobs.submit({"model_name": "x", "dataset": {"builtin": "digits"}, "y": 1})
            assert invalid.value.status == 422 and invalid.value.details[0]["field"] == "y"
        async with AsyncClient(stack.url, "ts_not-a-key") as stranger:
            with pytest.raises(AuthError) as refused:
                await stranger.datasets.get("anything")
            assert refused.value.status == 401

    asyncio.run(main())


def test_keys_and_datasets(stack: Stack) -> None:
    async def main() -> None:
        async with AsyncClient(stack.url, ADMIN_KEY) as ts:
            made = await ts.keys.create(f"async-{secrets.token_hex(3)}", ["jobs:read"])
            assert made["id"] in {k["id"] async for k in ts.keys.list()}
            await ts.keys.revoke(made["id"])
            csv = b"a,y\n" + b"".join(f"{i},{'pq'[i % 2]}\n".encode() for i in range(40))
            dataset = await ts.datasets.upload(csv, "async-table", "csv", target="y")
            assert dataset["id"] in {d["id"] async for d in ts.datasets.list()}
            await ts.datasets.delete(dataset["id"])

    asyncio.run(main())
