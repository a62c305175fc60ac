"""Keys and tenancy: scoped keys made through the API, revoked at once, and one project's
jobs, datasets and models invisible (404, not 403) to another project's keys."""

from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.config import get_settings
from tests.dataset_files import csv_bytes
from tests.integration.test_api import fixed_model
from tests.support import seed_spec, unique_name

ALL = ["jobs:write", "jobs:read", "models:write", "models:read", "predict"]


def key(api: TestClient, project: str, scopes: list[str] = ALL) -> dict[str, str]:
    response = api.post(
        "/v1/keys", json={"name": f"{project}-key", "scopes": scopes, "project": project}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["key"].startswith("ts_") and body["project"] == project and body["scopes"] == scopes
    return {"Authorization": f"Bearer {body['key']}", "X-Key-Id": body["id"]}


@pytest.fixture(scope="module")
def two_projects(api: TestClient) -> dict[str, Any]:
    a, b = key(api, "alpha"), key(api, "beta")
    job = api.post("/v1/jobs", json=seed_spec("alpha-job"), headers=a).json()
    data = csv_bytes({"x": [1, 2, 3, 4], "y": ["p", "q", "p", "q"]})
    dataset = api.post(
        "/v1/datasets",
        headers=a,
        files={"file": ("d.csv", data)},
        data={"name": unique_name("alpha-data"), "format": "csv", "target": "y"},
    ).json()
    fixed_model("alpha-model", get_settings().data_dir, project="alpha")
    return {"a": a, "b": b, "job": job["id"], "dataset": dataset["id"]}


def test_another_projects_resources_are_404(api: TestClient, two_projects: dict[str, Any]) -> None:
    b, job, dataset = two_projects["b"], two_projects["job"], two_projects["dataset"]
    for method, path in [
        ("GET", f"/v1/jobs/{job}"),
        ("GET", f"/v1/jobs/{job}/metrics"),
        ("GET", f"/v1/jobs/{job}/events"),
        ("POST", f"/v1/jobs/{job}/cancel"),
        ("GET", f"/v1/datasets/{dataset}"),
        ("DELETE", f"/v1/datasets/{dataset}"),
        ("GET", "/v1/models/alpha-model"),
        ("GET", "/v1/models/alpha-model/versions/1"),
        ("DELETE", "/v1/models/alpha-model/versions/1"),
        ("DELETE", "/v1/models/alpha-model/aliases/production"),
        ("GET", "/v2/models/alpha-model"),
        ("GET", "/v2/models/alpha-model/ready"),
    ]:
        response = api.request(method, path, headers=b)
        assert response.status_code == 404, (method, path, response.text)
    assert (
        api.put(
            "/v1/models/alpha-model/aliases/production", json={"version": 1}, headers=b
        ).status_code
        == 404
    )
    assert (
        api.post("/v1/models/alpha-model/predict", json={"inputs": [[1, 0]]}, headers=b).status_code
        == 404
    )


def test_lists_show_only_the_callers_project(api: TestClient, two_projects: dict[str, Any]) -> None:
    a, b = two_projects["a"], two_projects["b"]
    alpha_jobs = api.get("/v1/jobs", headers=a).json()["items"]  # the submitted one, the model's
    assert {j["model_name"] for j in alpha_jobs} == {"alpha-job", "alpha-model"}
    assert api.get("/v1/jobs", headers=b).json()["items"] == []
    assert api.get("/v1/datasets", headers=b).json()["items"] == []
    assert [m["name"] for m in api.get("/v1/models", headers=a).json()["items"]] == ["alpha-model"]
    assert api.get("/v1/models", headers=b).json()["items"] == []
    everything = {
        m["name"] for m in api.get("/v1/models").json()["items"]
    }  # admin sees every project
    assert "alpha-model" in everything
    assert api.get(f"/v1/jobs/{two_projects['job']}").status_code == 200


def test_the_owner_works_normally(api: TestClient, two_projects: dict[str, Any]) -> None:
    a = two_projects["a"]
    assert api.post("/v1/models/alpha-model/predict", json={"inputs": [[1, 0]]}, headers=a).json()[
        "predictions"
    ] == ["cat"]
    assert api.get(f"/v1/datasets/{two_projects['dataset']}", headers=a).status_code == 200


def test_a_project_cannot_use_another_projects_dataset(
    api: TestClient, two_projects: dict[str, Any]
) -> None:
    b = two_projects["b"]
    on_their_data = {**seed_spec("beta-job"), "dataset": {"id": two_projects["dataset"]}}
    response = api.post("/v1/jobs", json=on_their_data, headers=b)
    assert response.status_code == 422 and response.json()["error"]["message"].startswith(
        "dataset.id: no dataset"
    )


def test_scopes_are_enforced_and_only_admins_manage_keys(api: TestClient) -> None:
    reader = key(api, "gamma", ["jobs:read"])
    denied = api.post("/v1/jobs", json=seed_spec("gamma-job"), headers=reader)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "insufficient_scope"
    assert api.get("/v1/jobs", headers=reader).status_code == 200
    assert (
        api.post("/v1/keys", json={"name": "x", "scopes": ["admin"]}, headers=reader).status_code
        == 403
    )
    assert api.get("/v1/keys", headers=reader).status_code == 403
    bad = api.post("/v1/keys", json={"name": "x", "scopes": ["root"]})
    assert bad.status_code == 422 and bad.json()["error"]["message"].startswith("scopes.0")


def test_a_revoked_key_stops_working_at_once(api: TestClient) -> None:
    headers = key(api, "delta", ["jobs:read"])
    assert api.get("/v1/jobs", headers=headers).status_code == 200
    listed = {k["id"]: k for k in api.get("/v1/keys").json()["items"]}
    assert "key" not in listed[headers["X-Key-Id"]] and listed[headers["X-Key-Id"]]["last_used_at"]
    assert api.delete(f"/v1/keys/{headers['X-Key-Id']}").status_code == 204
    revoked = api.get("/v1/jobs", headers=headers)
    assert revoked.status_code == 401 and revoked.json()["error"]["code"] == "invalid_key"
    assert api.delete("/v1/keys/no-such-key").status_code == 404
