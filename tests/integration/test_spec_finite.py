"""NaN and ±Infinity in a job spec are refused with a 422 naming the field, on PostgreSQL (which
refused the row with a 500) as on SQLite (which stored null): Python's json reads the bare
literals NaN, Infinity and -Infinity, so the bodies here are sent as raw bytes."""

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

# (the spec's training part as raw JSON text, the field the 422 must name)
NON_FINITE = [
    ('{"grad_clip": Infinity}', "training.grad_clip"),
    ('{"class_weights": [NaN, 1, 1]}', "training.class_weights.list.0"),
    ('{"class_weights": [1, -Infinity, 1]}', "training.class_weights.list.1"),
    ('{"class_weights": {"setosa": Infinity}}', "training.class_weights.map.setosa"),
    ('{"schedule": {"min_lr": Infinity}}', "training.schedule.min_lr"),
    ('{"early_stopping": {"min_delta": Infinity}}', "training.early_stopping.min_delta"),
]


def raw_spec(name: str, training: str) -> bytes:
    head = json.dumps({"model_name": name, "dataset": {"builtin": "iris"}})
    return f'{head[:-1]}, "training": {training}}}'.encode()


def assert_refused(status: int, body: dict[str, Any], field: str) -> None:
    assert status == 422, body
    error = body["error"]
    assert error["code"] == "validation_error"
    assert error["message"].startswith(f"{field}: "), error
    assert error["details"][0]["field"] == field
    assert "finite" in error["details"][0]["message"]


@pytest.mark.parametrize("dry_run", [False, True], ids=["submit", "dry_run"])
@pytest.mark.parametrize(("training", "field"), NON_FINITE)
def test_nan_or_infinity_in_a_job_spec_is_a_422_naming_the_field_and_stores_nothing(
    api: TestClient, training: str, field: str, dry_run: bool
) -> None:
    name = f"finite-{field}-{int(dry_run)}"
    body = raw_spec(name, training)
    assert b"NaN" in body or b"Infinity" in body
    response = api.post(
        "/v1/jobs",
        content=body,
        params={"dry_run": dry_run},
        headers={"Content-Type": "application/json"},
    )
    assert_refused(response.status_code, response.json(), field)
    listed = api.get("/v1/jobs", params={"limit": 200}).json()["items"]
    assert name not in {job["model_name"] for job in listed}


def test_finite_numbers_in_the_same_fields_are_accepted(api: TestClient) -> None:
    training = (
        '{"grad_clip": 1e300, "class_weights": [0.5, 1, 2], "schedule": {"min_lr": 0.0},'
        ' "early_stopping": {"min_delta": 1e-12}}'
    )
    response = api.post(
        "/v1/jobs",
        content=raw_spec("finite-ok", training),
        params={"dry_run": True},
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["spec"]["training"]["class_weights"] == [0.5, 1.0, 2.0]
