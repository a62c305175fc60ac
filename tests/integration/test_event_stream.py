"""GET /v1/jobs/{id}/events: one stream of a job's events and per-epoch metrics in time order,
every message with an id, and a reconnect with Last-Event-ID resuming exactly after it.

Histories written straight into the database (controlled times) pin the order down; a real
worker and a real API process show it live, with a client dropping the stream half-way."""

import json
import secrets
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.core.db import session_scope
from app.models import Job, JobEvent, JobMetric, JobStatus
from tests.integration.conftest import ADMIN_KEY
from tests.support import BIN, Proc, api_error, base_env, free_port, seed_spec, wait_http_ok

Message = dict[str, Any]  # {"id": str | None, "event": str, "data": {...}}
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def messages(lines: Iterable[str]) -> Iterator[Message]:
    """SSE messages as a client parses them (a block with no event, e.g. retry:, is skipped)."""
    block: Message = {}
    for line in lines:
        if not line:
            if "event" in block:
                yield {"id": block.get("id"), "event": block["event"], "data": block["data"]}
            block = {}
        elif line.startswith(("id: ", "event: ")):
            field, _, value = line.partition(": ")
            block[field] = value
        elif line.startswith("data: "):
            block["data"] = json.loads(line[6:])


def read(api: TestClient, job_id: str, last_event_id: str | None = None) -> list[Message]:
    """The stream of a job that has ended (the in-process client reads it to its end)."""
    headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
    response = api.get(f"/v1/jobs/{job_id}/events", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return list(messages(response.text.splitlines()))


def position(message: Message) -> tuple[int, int]:
    event, _, metric = message["id"].partition("-")
    return int(event), int(metric)


def assert_ids_strictly_increase(stream: list[Message]) -> None:
    ids = [position(m) for m in stream if m["event"] != "end"]
    assert all(m["id"] for m in stream if m["event"] != "end"), stream
    for before, after in pairwise(ids):
        assert after[0] >= before[0] and after[1] >= before[1] and after != before, ids


def history(rows: list[tuple[float, str, Any]]) -> str:
    """A finished job whose events and metrics were written at the given seconds after T0:
    ("event", kind) or ("metrics", epoch). Each table is written in its own go, so their ids
    say nothing about the order between them; only the times do."""
    with session_scope() as session:
        job = Job(
            model_name=f"history-{secrets.token_hex(4)}",
            spec=seed_spec(),
            status=JobStatus.succeeded,
            progress={},
            metrics={},
        )
        session.add(job)
        session.flush()
        for seconds, table, what in rows:
            if table == "event":
                time = T0 + timedelta(seconds=seconds)
                session.add(JobEvent(job_id=job.id, attempt=1, kind=what, message=what, time=time))
        session.flush()
        for seconds, table, epoch in rows:
            if table == "metrics":
                for name, value in (("train_loss", 1.0 / epoch), ("val_accuracy", 0.5)):
                    session.add(
                        JobMetric(
                            job_id=job.id,
                            epoch=epoch,
                            step=10 * epoch,
                            name=name,
                            value=value,
                            time=T0 + timedelta(seconds=seconds),
                        )
                    )
        return job.id


HISTORY = [
    (0, "event", "queued"),
    (1, "event", "claimed"),
    (2, "metrics", 1),
    (3, "event", "checkpoint"),
    (4, "metrics", 2),
    (5, "event", "checkpoint"),
    (6, "metrics", 3),
    (6, "event", "succeeded"),  # the same instant as the last metrics: they still come first
]


def test_the_stream_is_in_time_order_across_events_and_metrics(api: TestClient) -> None:
    stream = read(api, history(HISTORY))
    got = [m["data"].get("kind", m["data"].get("epoch")) for m in stream[:-1]]
    assert got == ["queued", "claimed", 1, "checkpoint", 2, "checkpoint", 3, "succeeded"]
    assert [m["event"] for m in stream] == [
        *("status", "status", "metrics", "event", "metrics", "event", "metrics", "status"),
        "end",
    ]
    assert stream[2]["data"] == {
        "epoch": 1,
        "step": 10,
        "metrics": {"train_loss": 1.0, "val_accuracy": 0.5},
    }
    assert stream[-1]["data"]["status"] == "succeeded" and stream[-1]["id"] is None
    assert_ids_strictly_increase(stream)


def test_resuming_from_any_id_gives_exactly_the_rest(api: TestClient) -> None:
    job_id = history(HISTORY)
    full = read(api, job_id)
    for k, message in enumerate(full[:-1]):
        assert read(api, job_id, message["id"]) == full[k + 1 :], message
    assert read(api, job_id, "0-0") == full  # from the start


@pytest.mark.parametrize(
    "bad",
    ["abc", "12", "1-2-3", "-1-0", "1_0", "\uff11-0", "1 -0", "1234567890123456789-0", "7-x"],
)
def test_a_malformed_last_event_id_is_400(api: TestClient, bad: str) -> None:
    job_id = history(HISTORY[:2])
    response = api.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": bad.encode()})
    api_error(response, 400, "invalid_last_event_id")


def test_an_id_from_another_jobs_stream_is_400_not_a_silent_skip(api: TestClient) -> None:
    ours, theirs = history(HISTORY), history(HISTORY)
    foreign = read(api, theirs)[-2]["id"]
    error = api_error(
        api.get(f"/v1/jobs/{ours}/events", headers={"Last-Event-ID": foreign}),
        400,
        "invalid_last_event_id",
    )
    assert foreign in error["message"]


def test_the_events_route_declares_an_event_stream(api: TestClient) -> None:
    route = api.get("/openapi.json").json()["paths"]["/v1/jobs/{job_id}/events"]["get"]
    assert "text/event-stream" in route["responses"]["200"]["content"]
    assert "last-event-id" in [p["name"].lower() for p in route["parameters"]]


@pytest.fixture(scope="module")
def api_process(
    configured: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real `trainserve api` on the test database: streams over a real socket, dropped at will."""
    port = free_port()
    log: Path = tmp_path_factory.mktemp("stream-api") / "api.log"
    proc = Proc([str(BIN), "api", "--port", str(port)], base_env() | configured, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{url}/readyz", proc)
        yield url
    finally:
        proc.stop()


def stream_over_http(url: str, job_id: str, last_event_id: str | None = None) -> Iterator[Message]:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    with httpx.stream("GET", f"{url}/v1/jobs/{job_id}/events", headers=headers, timeout=180) as r:
        assert r.status_code == 200, r.read()
        yield from messages(r.iter_lines())


@pytest.mark.usefixtures("worker")
def test_a_dropped_live_stream_resumes_where_it_stopped(api: TestClient, api_process: str) -> None:
    epochs = 12
    submitted = api.post(
        "/v1/jobs", json=seed_spec(f"resume-{secrets.token_hex(3)}", epochs=epochs)
    )
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    first: list[Message] = []
    for message in stream_over_http(api_process, job_id):  # dropped after the first metrics
        first.append(message)
        if message["event"] == "metrics":
            break
    rest = list(stream_over_http(api_process, job_id, first[-1]["id"]))
    whole = list(stream_over_http(api_process, job_id))  # the job has ended: one full read
    assert first + rest == whole
    assert_ids_strictly_increase(whole)
    kinds = [m["event"] for m in whole]
    assert kinds[-1] == "end" and whole[-1]["data"]["status"] == "succeeded", whole[-1]
    succeeded = next(i for i, m in enumerate(whole) if m["data"].get("kind") == "succeeded")
    metrics = [i for i, m in enumerate(whole) if m["event"] == "metrics"]
    assert [whole[i]["data"]["epoch"] for i in metrics] == list(range(1, epochs + 1))
    assert max(metrics) < succeeded, "the job said succeeded before its last metrics"
