"""Client.models, .datasets and .keys against the real stack, and the errors every non-2xx
answer becomes: the server's code, message and details, in the class of its status."""

import hashlib
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
from trainserve_client import (
    AuthError,
    Client,
    ConflictError,
    NotFoundError,
    TrainserveError,
    ValidationError,
)

from tests.client.conftest import Stack
from tests.dataset_files import csv_bytes
from tests.integration.conftest import ADMIN_KEY
from tests.support import held_out_digits

NAME = "client-digits"


def test_predict_answers_as_the_http_api_does(
    client: Client, stack: Stack, trained: dict[str, Any]
) -> None:
    rows, labels = held_out_digits()
    answer = client.models.predict(NAME, rows[:20])
    raw = httpx.post(
        f"{stack.url}/v1/models/{NAME}/predict",
        json={"inputs": rows[:20]},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    ).json()
    assert answer == raw
    assert (answer["model_name"], answer["model_version"], answer["job_id"]) == (
        NAME,
        1,
        trained["id"],
    )
    right = sum(p == y for p, y in zip(answer["predictions"], labels[:20], strict=True))
    assert right >= 14, answer["predictions"]
    assert len(answer["probabilities"]) == 20


def test_versions_and_aliases(client: Client, trained: dict[str, Any]) -> None:
    summary = next(m for m in client.models.list() if m["name"] == NAME)
    assert summary["latest_version"] == 1 and summary["project"] == "default"
    version = client.models.version(NAME, 1)
    assert version["job_id"] == trained["id"] and version["input_shape"] == [64]
    assert client.models.set_alias(NAME, "production", 1) == {
        "model_name": NAME,
        "alias": "production",
        "version": 1,
    }
    assert client.models.get(NAME)["aliases"] == {"production": 1}
    rows = held_out_digits()[0][:3]
    by_alias = client.models.predict(NAME, rows, version="production")
    assert by_alias == client.models.predict(NAME, rows, version=1)
    client.models.delete_alias(NAME, "production")
    assert client.models.get(NAME)["aliases"] == {}


def test_artifact_as_bytes_and_as_a_file(
    client: Client, trained: dict[str, Any], tmp_path: Path
) -> None:
    sha = client.models.version(NAME, 1)["checkpoint_sha256"]
    data = client.models.artifact(NAME, 1)
    assert hashlib.sha256(data).hexdigest() == sha
    written = client.models.artifact(NAME, 1, "safetensors", path=tmp_path)
    assert written.parent == tmp_path and written.suffix == ".safetensors"
    assert written.read_bytes() == data
    named = client.models.artifact(NAME, 1, path=tmp_path / "weights.bin")
    assert named.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([written.name, "weights.bin"])


def test_a_dataset_uploaded_listed_and_deleted(client: Client, tmp_path: Path) -> None:
    table = csv_bytes({"a": [float(i) for i in range(40)], "y": ["p", "q"] * 20})
    from_bytes = client.datasets.upload(table, "from-bytes", "csv", target="y")
    assert from_bytes["format"] == "csv" and from_bytes["task"] == "classification"
    path = tmp_path / "table.csv"
    path.write_bytes(table)
    from_path = client.datasets.upload(path, "from-path", "csv", target="y")
    assert from_path["sha256"] == from_bytes["sha256"]
    assert {from_bytes["id"], from_path["id"]} <= {
        d["id"] for d in client.datasets.list(page_size=1)
    }
    assert client.datasets.get(from_path["id"]) == from_path
    client.datasets.delete(from_path["id"])
    with pytest.raises(NotFoundError):
        client.datasets.get(from_path["id"])


def test_a_key_made_used_and_revoked(client: Client, stack: Stack, trained: dict[str, Any]) -> None:
    made = client.keys.create(f"predictor-{secrets.token_hex(3)}", ["predict"])
    assert made["key"].startswith(made["prefix"]) and made["project"] == "default"
    assert made["id"] in {k["id"] for k in client.keys.list()}
    rows = held_out_digits()[0][:2]
    with Client(stack.url, made["key"]) as predictor:
        assert predictor.models.predict(NAME, rows)["model_version"] == 1
        with pytest.raises(AuthError) as refused:
            list(predictor.models.list())  # predict scope only
        assert (refused.value.status, refused.value.code) == (403, "insufficient_scope")
        client.keys.revoke(made["id"])
        with pytest.raises(AuthError) as revoked:
            predictor.models.predict(NAME, rows)
        assert (revoked.value.status, revoked.value.code) == (401, "invalid_key")


def test_the_key_and_url_come_from_the_environment(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINSERVE_URL", stack.url)
    monkeypatch.setenv("TRAINSERVE_KEY", ADMIN_KEY)
    with Client() as from_env:
        assert from_env.url == stack.url
        assert all("name" in m for m in from_env.models.list())


def test_a_missing_thing_is_not_found(client: Client) -> None:
    for call in (
        lambda: client.jobs.get("no-such-job"),
        lambda: client.models.get("no-such-model"),
        lambda: client.models.predict("no-such-model", [[1.0]]),
        lambda: list(client.jobs.events("no-such-job")),
    ):
        with pytest.raises(NotFoundError) as caught:
            call()
        error = caught.value
        assert (error.status, error.code) == (404, "not_found") and error.message


def test_an_invalid_spec_is_a_422_naming_the_field(client: Client) -> None:
    spec = {
        "model_name": "bad",
        "dataset": {"builtin": "digits"},
        "training": {"optimizer": {"lr": -1}},
    }
    with pytest.raises(ValidationError) as caught:
        client.jobs.submit(spec)
    error = caught.value
    assert (error.status, error.code) == (422, "validation_error")
    assert "training.optimizer.lr" in error.message
    assert [d["field"] for d in error.details] == ["training.optimizer.lr"]
    assert str(error).startswith("422 validation_error: training.optimizer.lr")


def test_a_wrong_key_is_a_401(stack: Stack) -> None:
    with Client(stack.url, "ts_not-a-key") as stranger, pytest.raises(AuthError) as caught:
        list(stranger.models.list())
    assert (caught.value.status, caught.value.code) == (401, "invalid_key")
    assert isinstance(caught.value, TrainserveError)
    with Client(stack.url, "") as keyless, pytest.raises(AuthError) as missing:
        list(keyless.models.list())
    assert (missing.value.status, missing.value.code) == (401, "missing_key")


def test_an_idempotency_key_reused_with_another_spec_conflicts(client: Client) -> None:
    key = secrets.token_hex(8)
    spec = {"model_name": "conflict-a", "dataset": {"builtin": "iris"}, "training": {"epochs": 500}}
    first = client.jobs.submit(spec, key)  # long: cancelled before it can finish
    client.jobs.cancel(first["id"])
    with pytest.raises(ConflictError) as caught:
        client.jobs.submit({"model_name": "conflict-b", "dataset": {"builtin": "iris"}}, key)
    assert (caught.value.status, caught.value.code) == (409, "idempotency_conflict")


def test_workers_lists_the_stacks_worker_in_the_default_pool(client: Client) -> None:
    found = list(client.workers.list())
    assert len(found) == 1
    worker = found[0]
    assert (worker["pool"], worker["state"], worker["capacity"]) == ("default", "live", 1)
    assert worker["devices"] and isinstance(worker["running"], list)
    assert [w["id"] for w in client.workers.list("default")] == [worker["id"]]
    assert list(client.workers.list("special")) == []
