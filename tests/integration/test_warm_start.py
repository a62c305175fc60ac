"""Warm start through the real stack: a job that names a registered version in `init` begins
from its weights and its preprocessing, its version names its parent, and a parent that does
not fit the job is refused at submission."""

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.dataset_files import csv_bytes
from tests.integration.test_tenancy import key
from tests.integration.test_training_jobs import train, upload
from tests.support import Proc, seed_spec

pytestmark = pytest.mark.usefixtures("worker")


def first_epoch_accuracy(api: TestClient, job_id: str) -> float:
    points = api.get(f"/v1/jobs/{job_id}/metrics").json()
    return next(p["value"] for p in points if p["epoch"] == 1 and p["name"] == "val_accuracy")


@pytest.fixture(scope="module")
def parent(api: TestClient, worker: Proc) -> dict[str, Any]:
    job = train(api, seed_spec("ws-digits", epochs=4), worker)
    assert (
        api.put("/v1/models/ws-digits/aliases/production", json={"version": 1}).status_code == 200
    )
    return job


def test_a_warm_start_continues_from_its_parent(
    api: TestClient, worker: Proc, parent: dict[str, Any]
) -> None:
    scratch = train(api, seed_spec("ws-scratch", epochs=1), worker)
    spec = seed_spec("ws-child", epochs=1) | {"init": {"model": "ws-digits", "alias": "production"}}
    child = train(api, spec, worker)
    assert child["spec"]["init"] == {"model": "ws-digits", "version": 1, "alias": None}
    # One epoch on from four is better than one epoch from scratch, from the first epoch on.
    assert first_epoch_accuracy(api, child["id"]) > first_epoch_accuracy(api, scratch["id"]) + 0.02
    assert child["metrics"]["val_accuracy"] >= parent["metrics"]["val_accuracy"] - 0.02
    version = api.get("/v1/models/ws-child/versions/1").json()
    assert version["parent"] == {"model": "ws-digits", "version": 1}
    assert api.get("/v1/models/ws-scratch/versions/1").json()["parent"] is None


def test_a_regressor_keeps_its_parents_target_units(api: TestClient, worker: Proc) -> None:
    xs = [i / 10 for i in range(80)]
    data = csv_bytes({"x": xs, "y": [3 * x + 100 for x in xs]})
    dataset = upload(api, data, "csv", target="y", task="regression")
    spec = {
        "model_name": "ws-line",
        "dataset": {"id": dataset},
        "model": {"arch": "mlp", "hidden": [16]},
        "training": {"epochs": 30, "optimizer": {"name": "adam", "lr": 0.01}, "batch_size": 16},
    }
    train(api, spec, worker)
    shifted = upload(api, csv_bytes({"x": xs, "y": [3 * x + 101 for x in xs]}), "csv", target="y")
    child = spec | {
        "model_name": "ws-line-2",
        "dataset": {"id": shifted},
        "init": {"model": "ws-line", "version": 1},
        "training": spec["training"] | {"epochs": 1, "optimizer": {"name": "adam", "lr": 1e-4}},
    }
    train(api, child, worker)
    answer = api.post("/v1/models/ws-line-2/predict", json={"inputs": [[4.0]]}).json()
    assert abs(answer["predictions"][0] - 112.0) < 2.0, answer  # in the data's units


def test_a_parent_that_does_not_fit_is_refused(api: TestClient, parent: dict[str, Any]) -> None:
    def refused(spec: dict[str, Any], match: str, headers: dict[str, str] | None = None) -> None:
        response = api.post("/v1/jobs", json=spec, headers=headers or {})
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["message"].startswith("init:") and match in error["message"], error

    base = seed_spec("ws-bad", epochs=1)
    refused(base | {"init": {"model": "no-such-model", "version": 1}}, "no-such-model")
    refused(base | {"init": {"model": "ws-digits", "version": 9}}, "no version 9")
    refused(base | {"init": {"model": "ws-digits", "alias": "staging"}}, "no alias")
    wider = base | {"model": {"arch": "mlp", "hidden": [64]}}
    refused(wider | {"init": {"model": "ws-digits", "version": 1}}, "model.hidden")
    iris = base | {"dataset": {"builtin": "iris"}}
    refused(iris | {"init": {"model": "ws-digits", "version": 1}}, "classes")
    other = key(api, "ws-other")
    refused(base | {"init": {"model": "ws-digits", "version": 1}}, "ws-digits", other)
    both = api.post(
        "/v1/jobs", json=base | {"init": {"model": "ws-digits", "version": 1, "alias": "x"}}
    )
    assert both.status_code == 422 and "exactly one" in both.text
