"""/metrics names every project's models and their traffic, so it is secured by default: a key
with the metrics (or admin) scope. An operator may open it (TRAINSERVE_METRICS_OPEN), and then
it names no tenant: per-model series are summed over models."""

import re
import secrets
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.core.config import get_settings
from tests.support import api_error, fixed_model


def make_key(api: TestClient, scopes: list[str], project: str = "default") -> dict[str, str]:
    body = {"name": "metrics-test", "scopes": scopes, "project": project}
    response = api.post("/v1/keys", json=body)
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['key']}"}


def anonymous(api: TestClient, path: str, headers: dict[str, str] | None = None) -> object:
    """A request that does not carry the fixture's admin key."""
    return api.get(path, headers={"Authorization": "", **(headers or {})})


@pytest.fixture(scope="module")
def tenants(api: TestClient) -> dict[str, dict[str, str]]:
    """Two projects, each with a model that has answered a predict request: what /metrics
    must not give away when open."""
    data_dir = get_settings().data_dir
    found = {}
    for _ in range(2):
        project, model = f"tenant-{secrets.token_hex(4)}", f"secret-{secrets.token_hex(4)}"
        fixed_model(model, data_dir, project=project)
        headers = make_key(api, ["predict"], project)
        response = api.post(
            f"/v1/models/{model}/predict", json={"inputs": [[1, 0]]}, headers=headers
        )
        assert response.status_code == 200, response.text
        found[model] = {"project": project, **headers}
    return found


@pytest.fixture
def open_metrics(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TRAINSERVE_METRICS_OPEN", "true")
    get_settings.cache_clear()
    yield
    monkeypatch.delenv("TRAINSERVE_METRICS_OPEN")
    get_settings.cache_clear()


def test_metrics_without_a_key_is_401(api: TestClient) -> None:
    api_error(anonymous(api, "/metrics"), 401, "missing_key")
    api_error(anonymous(api, "/metrics", {"Authorization": "Bearer ts_forged"}), 401, "invalid_key")
    assert anonymous(api, "/healthz").status_code == 200  # probes stay open
    assert anonymous(api, "/readyz").status_code == 200


def test_metrics_with_a_key_lacking_the_metrics_scope_is_403(
    api: TestClient, tenants: dict[str, dict[str, str]]
) -> None:
    for scopes in (["predict"], ["jobs:read", "models:read", "models:write", "jobs:write"]):
        headers = make_key(api, scopes)
        api_error(api.get("/metrics", headers=headers), 403, "insufficient_scope")
    for tenant in tenants.values():  # a tenant's own predict key sees no other tenant
        api_error(api.get("/metrics", headers=tenant), 403, "insufficient_scope")


def test_a_metrics_key_reads_per_model_series_and_nothing_else(
    api: TestClient, tenants: dict[str, dict[str, str]]
) -> None:
    headers = make_key(api, ["metrics"])
    response = api.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    for model, tenant in tenants.items():
        label = f"{tenant['project']}/{model}"
        assert f'trainserve_predict_requests_total{{model="{label}",status="200"}} 1.0' in (
            response.text
        )
    api_error(api.get("/v1/jobs", headers=headers), 403, "insufficient_scope")
    api_error(api.get("/v1/models", headers=headers), 403, "insufficient_scope")
    assert api.get("/metrics").status_code == 200  # the admin key reads it too


@pytest.mark.usefixtures("open_metrics")
def test_open_metrics_need_no_key_and_name_no_tenant(
    api: TestClient, tenants: dict[str, dict[str, str]]
) -> None:
    before = anonymous(api, "/metrics")
    assert before.status_code == 200, before.text
    for model, tenant in tenants.items():  # a failed request is labelled by its model too
        wrong_width = {"inputs": [[1, 0, 1]]}
        response = api.post(f"/v1/models/{model}/predict", json=wrong_width, headers=tenant)
        assert response.status_code == 422, response.text
    body = anonymous(api, "/metrics").text
    for model, tenant in tenants.items():
        assert model not in body and tenant["project"] not in body
    assert not re.search(r'\b(model|project)="', body), "a tenant label survived"
    # The traffic is still there, summed over models: every 200 of this process so far.
    ok = re.search(r'^trainserve_predict_requests_total\{status="200"\} (\S+)$', body, re.M)
    assert ok and float(ok.group(1)) >= len(tenants), body
    assert re.search(r'^trainserve_predict_seconds_bucket\{le="\+Inf"\} ', body, re.M)
    assert re.search(r'^trainserve_http_requests_total\{method="GET",route="/metrics"', body, re.M)
