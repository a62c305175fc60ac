"""The issue's five steps, as a user does them over HTTP, on both deployments."""

import json
import os
import stat

import httpx
import pytest

from tests.support import held_out_digits, seed_spec, wait_until

STACKS = ["embedded_stack", "pg_redis_stack"]


@pytest.fixture(params=STACKS)
def stack(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    return request.getfixturevalue(request.param)


def test_seed_job_trains_registers_and_predicts(stack) -> None:  # type: ignore[no-untyped-def]
    api = stack.api()
    job = api.submit(seed_spec("seed-mlp"))
    assert job["status"] == "queued"
    assert job["spec"]["training"]["optimizer"] == {
        "name": "sgd",
        "lr": 0.01,
        "momentum": 0.9,
        "nesterov": False,
        "weight_decay": 0.0,
    }

    done = api.wait_job(job["id"], timeout=180)
    assert done["status"] == "succeeded", stack.logs()
    assert done["attempt"] == 1
    assert done["progress"]["epoch"] == done["progress"]["epochs"] == 10
    assert done["progress"]["samples_per_s"] > 0
    assert set(done["metrics"]) >= {"train_loss", "val_loss", "val_accuracy"}
    kinds = [e["kind"] for e in done["events"]]
    assert [k for k in kinds if k != "checkpoint"] == ["queued", "claimed", "succeeded"]
    assert kinds.count("checkpoint") == 10

    history = api.http.get(f"/v1/jobs/{job['id']}/metrics").json()
    epochs = sorted({m["epoch"] for m in history})
    assert epochs == list(range(1, 11))
    losses = [m["value"] for m in history if m["name"] == "train_loss"]
    assert losses[-1] < losses[0] / 3, losses

    # one checkpoint per epoch was written; the newest ones are kept
    ckpts = sorted(
        (stack.data_dir / "artifacts" / "jobs" / job["id"] / "attempt-1").glob(
            "epoch-*.safetensors"
        )
    )
    assert [p.name for p in ckpts][-1] == "epoch-0010.safetensors"

    version = api.http.get("/v1/models/seed-mlp/versions/1").json()
    assert version["job_id"] == job["id"]
    assert version["classes"] == list(range(10))
    assert version["input_shape"] == [64]
    assert len(version["checkpoint_sha256"]) == 64

    rows, labels = held_out_digits()
    response = api.predict("seed-mlp", rows)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == 1 and body["job_id"] == job["id"]
    accuracy = sum(p == y for p, y in zip(body["predictions"], labels, strict=True)) / len(labels)
    assert accuracy >= 0.9, accuracy
    assert all(abs(sum(p) - 1) < 1e-4 and len(p) == 10 for p in body["probabilities"])


def test_progress_is_visible_while_running_and_cancel_stops_it(stack) -> None:  # type: ignore[no-untyped-def]
    api = stack.api()
    # batch 1 makes each epoch long enough to watch and to cancel mid-run
    spec = seed_spec("slow-mlp", epochs=1000, batch_size=1, validation_split=0.2)
    spec["training"]["optimizer"]["lr"] = 0.001  # stable at batch 1
    job = api.submit(spec)
    running = api.wait_job(job["id"], timeout=120, statuses=("running",))
    assert running["started_at"] is not None and running["attempt"] == 1
    progressed = wait_until(
        lambda: (j := api.job(job["id"]))["progress"]["epoch"] >= 2 and j, 60, "progress"
    )
    assert progressed["status"] == "running"
    assert progressed["progress"]["epochs"] == 1000
    assert progressed["progress"]["step"] >= 2 * 1437
    assert "val_accuracy" in progressed["metrics"]

    cancel = api.http.post(f"/v1/jobs/{job['id']}/cancel")
    assert cancel.status_code == 202
    ended = api.wait_job(job["id"], timeout=30)
    assert ended["status"] == "cancelled", ended
    assert ended["model_version"] is None
    assert ended["progress"]["epoch"] < 1000
    assert api.http.post(f"/v1/jobs/{job['id']}/cancel").status_code == 409
    # the last epoch's checkpoint stays
    assert list(
        (stack.data_dir / "artifacts" / "jobs" / job["id"]).glob("attempt-1/epoch-*.safetensors")
    )


def test_event_stream_ends_with_the_job(stack) -> None:  # type: ignore[no-untyped-def]
    api = stack.api()
    job = api.submit(seed_spec("sse-mlp", epochs=3))
    events: list[tuple[str, dict]] = []
    with api.http.stream("GET", f"/v1/jobs/{job['id']}/events", timeout=120) as response:
        assert response.headers["content-type"].startswith("text/event-stream"), response.read()
        name = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    kinds = [n for n, _ in events]
    assert kinds[-1] == "end" and events[-1][1]["status"] == "succeeded"
    assert [d["epoch"] for n, d in events if n == "metrics"] == [1, 2, 3]
    assert [d["status"] for n, d in events if n == "status"] == ["queued", "running", "succeeded"]
    assert [d["message"] for n, d in events if n == "event"] == [
        f"checkpoint at epoch {e}" for e in (1, 2, 3)
    ]


def test_requests_without_a_valid_key_get_401(stack) -> None:  # type: ignore[no-untyped-def]
    for headers in ({}, {"Authorization": "Bearer ts_wrong"}, {"Authorization": "Basic abc"}):
        response = httpx.post(f"{stack.base_url}/v1/jobs", json=seed_spec(), headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] in {"missing_key", "invalid_key"}
    assert httpx.get(f"{stack.base_url}/healthz").status_code == 200


def test_embedded_up_writes_the_admin_key_once(embedded_stack) -> None:  # type: ignore[no-untyped-def]
    key_file = embedded_stack.data_dir / "admin.key"
    assert key_file.read_text().strip() == embedded_stack.key
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert (embedded_stack.data_dir / "trainserve.db").is_file()


def test_a_2xx_means_the_write_is_visible(stack) -> None:  # type: ignore[no-untyped-def]
    """The session commits before the response is sent: read-after-write never 404s."""
    api = stack.api()
    for i in range(20):
        job = api.submit(seed_spec(f"raw-{i}", epochs=1))
        assert api.http.get(f"/v1/jobs/{job['id']}").status_code == 200
        assert api.http.post(f"/v1/jobs/{job['id']}/cancel").status_code in (202, 409)
