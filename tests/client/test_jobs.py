"""Client.jobs against the real stack: submit and wait, the event stream to its end (and
across a dropped connection), and Idempotency-Key: one job however often a submit is sent."""

import secrets
import threading
from itertools import pairwise
from typing import Any

import pytest
from trainserve_client import Client
from trainserve_client.types import JobEvent

from tests.client.conftest import Stack
from tests.client.proxy import CuttingProxy
from tests.integration.conftest import ADMIN_KEY
from tests.support import seed_spec


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def positions(stream: list[JobEvent]) -> list[tuple[int, int]]:
    ids = [m["id"] for m in stream if m["event"] != "end"]
    assert all(ids), stream
    return [(int(a), int(b)) for a, _, b in (i.partition("-") for i in ids if i)]


def test_submit_then_wait_gives_the_trained_job(client: Client, trained: dict[str, Any]) -> None:
    assert trained["model_name"] == "client-digits" and trained["model_version"] == 1
    assert trained["progress"]["epoch"] == trained["progress"]["epochs"] == 3
    assert trained["events"][0]["kind"] == "queued"
    assert client.jobs.get(trained["id"])["status"] == "succeeded"
    points = client.jobs.metrics(trained["id"])
    assert {p["epoch"] for p in points} == {1, 2, 3}


def test_list_walks_every_page(client: Client, trained: dict[str, Any]) -> None:
    name = f"pages-{secrets.token_hex(3)}"
    # Long jobs, cancelled at once: none can have succeeded when the list is read.
    made = [client.jobs.submit(seed_spec(name, epochs=200))["id"] for _ in range(2)]
    for job_id in made:
        client.jobs.cancel(job_id)
    listed = [j["id"] for j in client.jobs.list(page_size=1)]
    assert set(made) | {trained["id"]} <= set(listed)
    assert len(listed) == len(set(listed))  # no page repeats an item
    succeeded = [j["id"] for j in client.jobs.list(status="succeeded", page_size=2)]
    assert trained["id"] in succeeded and not set(made) & set(succeeded)


def test_wait_gives_up_after_its_timeout(client: Client) -> None:
    job = client.jobs.submit(seed_spec(f"slow-{secrets.token_hex(3)}", epochs=50))
    try:
        with pytest.raises(TimeoutError):
            client.jobs.wait(job["id"], timeout=0)  # one look: just submitted, not ended
    finally:
        assert client.jobs.cancel(job["id"])["id"] == job["id"]


def test_events_run_from_queued_to_the_end(client: Client, trained: dict[str, Any]) -> None:
    stream = list(client.jobs.events(trained["id"]))
    assert stream[0]["event"] == "status" and stream[0]["data"]["status"] == "queued"
    assert [m["data"]["epoch"] for m in stream if m["event"] == "metrics"] == [1, 2, 3]
    assert "val_accuracy" in next(m for m in stream if m["event"] == "metrics")["data"]["metrics"]
    end = stream[-1]
    assert end["event"] == "end" and end["id"] is None
    assert end["data"] == {
        "status": "succeeded",
        "status_message": "registered client-digits version 1",
        "model_version": 1,
    }
    assert all(b > a for a, b in pairwise(positions(stream)))


def test_events_resume_after_a_given_id(client: Client, trained: dict[str, Any]) -> None:
    full = list(client.jobs.events(trained["id"]))
    for k in (0, len(full) // 2, len(full) - 2):
        assert list(client.jobs.events(trained["id"], last_event_id=full[k]["id"])) == full[k + 1 :]


def cut_inside_the_message_after_the_first_metrics(received: bytes) -> int | None:
    """Cut once the message after the first metrics has sent its id line, not its end: that
    id must not count, so the resumed stream sends the message again, whole."""
    metrics = received.find(b"event: metrics")
    after = received.find(b"\n\n", metrics) if metrics >= 0 else -1
    next_id = received.find(b"id: ", after) if after >= 0 else -1
    line_end = received.find(b"\n", next_id) if next_id >= 0 else -1
    return line_end + 1 if line_end >= 0 else None


def test_a_dropped_stream_resumes_without_repeating(
    client: Client, stack: Stack, trained: dict[str, Any]
) -> None:
    """On the trained job's stream, whole in the first chunks: the cut falls mid-message.
    (tests/integration/test_event_stream.py drops a live one; the client's part is the same.)"""
    proxy = CuttingProxy(port_of(stack.url), cut_inside_the_message_after_the_first_metrics)
    try:
        with Client(proxy.url, ADMIN_KEY) as through_proxy:
            followed = list(through_proxy.jobs.events(trained["id"]))
    finally:
        proxy.close()
    assert proxy.cut_count == 1
    assert followed == list(client.jobs.events(trained["id"]))
    assert [m["data"]["epoch"] for m in followed if m["event"] == "metrics"] == [1, 2, 3]
    assert followed[-1]["event"] == "end"


def test_a_lost_answer_to_submit_is_retried_into_the_same_job(client: Client, stack: Stack) -> None:
    name = f"lost-{secrets.token_hex(3)}"
    proxy = CuttingProxy(port_of(stack.url), lambda received: 0)  # the 202 never arrives
    try:
        with Client(proxy.url, ADMIN_KEY) as through_proxy:
            job = through_proxy.jobs.submit(seed_spec(name, epochs=200))
    finally:
        proxy.close()
    assert proxy.cut_count == 1
    client.jobs.cancel(job["id"])
    assert [j["id"] for j in client.jobs.list() if j["model_name"] == name] == [job["id"]]


def test_one_key_submitted_eight_times_at_once_is_one_job(client: Client) -> None:
    name, key = f"idem-{secrets.token_hex(3)}", secrets.token_hex(8)
    barrier, ids = threading.Barrier(8), []

    def submit() -> None:
        barrier.wait()
        ids.append(client.jobs.submit(seed_spec(name, epochs=200), idempotency_key=key)["id"])

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(ids) == 8 and len(set(ids)) == 1
    assert [j["id"] for j in client.jobs.list() if j["model_name"] == name] == ids[:1]
    client.jobs.cancel(ids[0])


def test_validate_fills_in_the_defaults(client: Client) -> None:
    result = client.jobs.validate({"model_name": "dry", "dataset": {"builtin": "iris"}})
    assert result["valid"] and result["spec"]["training"]["epochs"] == 10
    assert not [j for j in client.jobs.list() if j["model_name"] == "dry"]
