"""The HTTP API in-process (TestClient) on real PostgreSQL and Redis: contract, errors, registry,
and predict with fixed weights so expected outputs are exact."""

import gc
import json
import math
import secrets
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.config import get_settings
from app.main import create_app
from tests.integration.conftest import ADMIN_KEY
from tests.support import BIN, base_env, fixed_model, seed_spec
from tests.support import api_error as _error

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture(scope="module")
def client(configured: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=False) as c:
        c.headers.update(AUTH)
        yield c


def merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge patch into base; "dataset" is replaced whole (it holds exactly one key)."""
    out = dict(base)
    for key, value in patch.items():
        both_dicts = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merge(out[key], value) if both_dicts and key != "dataset" else value
    return out


def softmax(a: float, b: float) -> list[float]:
    ea, eb = math.exp(a), math.exp(b)
    return [ea / (ea + eb), eb / (ea + eb)]


# --- jobs -------------------------------------------------------------------------------------


def test_submit_returns_202_queued_and_the_job_is_readable(client: TestClient) -> None:
    response = client.post("/v1/jobs", json=seed_spec("api-a"))
    assert response.status_code == 202
    job = response.json()
    assert job["status"] == "queued" and job["attempt"] == 0 and job["model_version"] is None
    assert job["progress"] == {"epoch": 0, "epochs": 10, "step": 0, "samples_per_s": None}
    fetched = client.get(f"/v1/jobs/{job['id']}").json()
    assert fetched["id"] == job["id"] and fetched["events"][0]["kind"] == "queued"


def test_defaults_are_the_seed_documents(client: TestClient) -> None:
    job = client.post(
        "/v1/jobs", json={"model_name": "defaults", "dataset": {"builtin": "iris"}}
    ).json()
    assert job["spec"]["model"]["hidden"] == [128]
    training = job["spec"]["training"]
    assert (training["epochs"], training["batch_size"]) == (10, 64)
    assert training["optimizer"] == {
        "name": "sgd",
        "lr": 0.01,
        "momentum": 0.9,
        "nesterov": False,
        "weight_decay": 0.0,
    }


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"model": {"arch": "transformer-xl"}}, "model.arch"),
        ({"training": {"optimizer": {"lr": -0.1}}}, "training.optimizer.lr"),
        ({"training": {"epochs": 0}}, "training.epochs"),
        ({"training": {"epochs": 100000}}, "training.epochs"),
        ({"training": {"optimizer": {"name": "lbfgs"}}}, "training.optimizer.name"),
        ({"dataset": {"builtin": "mnist-from-the-internet"}}, "dataset.builtin"),
        ({"dataset": {"id": "does-not-exist"}}, "dataset.id"),
        ({"dataset": {}}, "dataset"),
        ({"model_name": "../../etc/passwd"}, "model_name"),
        ({"training": {"epoch": 5}}, "training.epoch"),
        ({"model": {"hidden": [0]}}, "model.hidden"),
        ({"model": {"task": "classification"}, "dataset": {"builtin": "diabetes"}}, "model.task"),
    ],
)
def test_invalid_specs_get_422_naming_the_field(
    client: TestClient, patch: dict[str, Any], field: str
) -> None:
    spec = merge(seed_spec("bad"), patch)
    error = _error(client.post("/v1/jobs", json=spec), 422)
    assert error["message"].startswith(field), error


def test_dry_run_validates_without_queueing(client: TestClient) -> None:
    before = client.get("/v1/jobs", params={"limit": 200}).json()["items"]
    response = client.post("/v1/jobs", params={"dry_run": "true"}, json=seed_spec("dry"))
    assert response.status_code == 200 and response.json()["valid"] is True
    after = client.get("/v1/jobs", params={"limit": 200}).json()["items"]
    assert len(after) == len(before)
    _error(client.post("/v1/jobs", params={"dry_run": "true"}, json={"model_name": "x"}), 422)


def test_malformed_json_gets_400(client: TestClient) -> None:
    response = client.post(
        "/v1/jobs", content=b"{not json", headers={"content-type": "application/json"}
    )
    _error(response, 400, "invalid_json")


def test_idempotency_key_makes_a_retry_safe(client: TestClient) -> None:
    key = secrets.token_hex(8)
    first = client.post("/v1/jobs", json=seed_spec("idem"), headers={"Idempotency-Key": key})
    again = client.post("/v1/jobs", json=seed_spec("idem"), headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    other = client.post("/v1/jobs", json=seed_spec("idem-other"), headers={"Idempotency-Key": key})
    _error(other, 409, "idempotency_conflict")


def test_list_filters_by_status_and_paginates_without_gaps(client: TestClient) -> None:
    ids = {client.post("/v1/jobs", json=seed_spec(f"page-{i}")).json()["id"] for i in range(5)}
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, "status": "queued"}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/jobs", params=params).json()
        assert all(j["status"] == "queued" for j in page["items"])
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert ids <= set(seen) and len(seen) == len(set(seen))
    _error(client.get("/v1/jobs", params={"status": "exploded"}), 422)
    _error(client.get("/v1/jobs", params={"cursor": "%%%"}), 422)


def test_cancel_a_queued_job_at_once(client: TestClient) -> None:
    job = client.post("/v1/jobs", json=seed_spec("cancel-q")).json()
    response = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert response.status_code == 202 and response.json()["status"] == "cancelled"
    assert client.get(f"/v1/jobs/{job['id']}").json()["finished_at"] is not None
    _error(client.post(f"/v1/jobs/{job['id']}/cancel"), 409, "job_finished")


def test_unknown_job_is_404(client: TestClient) -> None:
    for path in ("/v1/jobs/nope", "/v1/jobs/nope/metrics", "/v1/jobs/nope/events"):
        _error(client.get(path), 404, "not_found")
    _error(client.post("/v1/jobs/nope/cancel"), 404)


# --- auth and limits --------------------------------------------------------------------------


def test_every_v1_route_needs_a_key(client: TestClient) -> None:
    for method, path in [
        ("GET", "/v1/jobs"),
        ("POST", "/v1/jobs"),
        ("GET", "/v1/models"),
        ("POST", "/v1/models/x/predict"),
        ("PUT", "/v1/models/x/aliases/production"),
        ("GET", "/metrics"),  # unless TRAINSERVE_METRICS_OPEN
    ]:
        response = client.request(method, path, headers={"Authorization": ""}, json={})
        _error(response, 401, "missing_key")
    _error(
        client.get("/v1/jobs", headers={"Authorization": "Bearer ts_not-a-key"}), 401, "invalid_key"
    )
    for path in ("/healthz", "/readyz", "/openapi.json"):
        assert client.get(path, headers={"Authorization": ""}).status_code == 200, path


def test_oversized_body_gets_413(client: TestClient) -> None:
    limit = get_settings().max_request_bytes
    body = b'{"inputs": [' + b"1," * limit + b"1]}"
    _error(
        client.post(
            "/v1/models/x/predict", content=body, headers={"content-type": "application/json"}
        ),
        413,
        "payload_too_large",
    )


def test_a_spec_is_bounded_far_below_predict_bodies(client: TestClient) -> None:
    """A job spec of a million unknown keys parses and validates to ~100x its size: JSON
    bodies but predict's stop at max_json_body_bytes (1 MiB), predict's at 8 MiB."""
    settings = get_settings()
    spec = seed_spec("bounded")
    spec["training"].update({f"k{i}": 0 for i in range(120_000)})  # ~1.5 MiB
    body = json.dumps(spec).encode()
    assert settings.max_json_body_bytes < len(body) < settings.max_request_bytes
    headers = {"content-type": "application/json"}
    error = _error(client.post("/v1/jobs", content=body, headers=headers), 413)
    assert error["details"][0]["max_bytes"] == settings.max_json_body_bytes
    assert error["details"][0]["field"] == "body"
    padded = b'{"inputs": [[1.0, 0.0]]' + b" " * len(body) + b"}"  # as big, but predict's
    fixed_model("bounded-rows", settings.data_dir)
    answer = client.post("/v1/models/bounded-rows/predict", content=padded, headers=headers)
    assert answer.status_code == 200, answer.text


def test_unknown_route_uses_the_error_shape(client: TestClient) -> None:
    _error(client.get("/v1/nothing-here"), 404, "not_found")
    _error(client.delete("/v1/jobs"), 405, "method_not_allowed")


# --- registry and predict ---------------------------------------------------------------------


def test_predict_with_fixed_weights_is_exact(client: TestClient) -> None:
    data_dir = get_settings().data_dir
    assert fixed_model("fixed", data_dir) == 1
    body = client.post(
        "/v1/models/fixed/predict", json={"inputs": [[1.0, 0.0], [0, 2], [-3, -1]]}
    ).json()
    assert body["model_name"] == "fixed" and body["model_version"] == 1
    assert body["predictions"] == ["cat", "dog", "cat"]
    for got, want in zip(
        body["probabilities"], [softmax(1, 0), softmax(0, 2), softmax(0, 0)], strict=True
    ):
        assert got == pytest.approx(want, abs=1e-6)


def test_versions_and_aliases_route_predict_traffic(client: TestClient) -> None:
    data_dir = get_settings().data_dir
    assert fixed_model("aliased", data_dir) == 1
    assert fixed_model("aliased", data_dir) == 2
    assert (
        client.post("/v1/models/aliased/predict", json={"inputs": [[1, 0]]}).json()["model_version"]
        == 2
    )
    assert (
        client.put("/v1/models/aliased/aliases/production", json={"version": 1}).status_code == 200
    )
    assert (
        client.post("/v1/models/aliased/predict", json={"inputs": [[1, 0]]}).json()["model_version"]
        == 1
    )
    by_ref = client.post("/v1/models/aliased/versions/2/predict", json={"inputs": [[1, 0]]}).json()
    assert by_ref["model_version"] == 2
    detail = client.get("/v1/models/aliased").json()
    assert detail["aliases"] == {"production": 1} and [
        v["version"] for v in detail["versions"]
    ] == [1, 2]
    listed = {m["name"]: m["latest_version"] for m in client.get("/v1/models").json()["items"]}
    assert listed["aliased"] == 2
    assert client.delete("/v1/models/aliased/aliases/production").status_code == 204
    assert (
        client.post("/v1/models/aliased/predict", json={"inputs": [[1, 0]]}).json()["model_version"]
        == 2
    )
    _error(client.put("/v1/models/aliased/aliases/production", json={"version": 9}), 404)
    _error(client.delete("/v1/models/aliased/aliases/production"), 404)
    _error(
        client.post("/v1/models/aliased/versions/staging/predict", json={"inputs": [[1, 0]]}), 404
    )


@pytest.mark.parametrize(
    ("inputs", "status", "needle"),
    [
        ([[1, 2, 3]], 422, "inputs[0]: expected 2 features, got 3"),
        ([[1, 0], "a string"], 422, "inputs[1]"),
        ([[1, "x"]], 422, "inputs[0]: feature 1 must be a number, got str"),
        ([[True, 0]], 422, "inputs[0]"),
        ([], 422, "inputs"),
    ],
)
def test_bad_predict_rows_get_a_clear_4xx(
    client: TestClient, inputs: Any, status: int, needle: str
) -> None:
    fixed_model("rows", get_settings().data_dir)
    error = _error(client.post("/v1/models/rows/predict", json={"inputs": inputs}), status)
    assert needle in error["message"]


def test_nan_and_huge_inputs_are_refused(client: TestClient) -> None:
    fixed_model("finite", get_settings().data_dir)
    for raw in (
        b'{"inputs": [[NaN, 0]]}',
        b'{"inputs": [[Infinity, 0]]}',
        b'{"inputs": [[1e308, 0]]}',
    ):
        response = client.post(
            "/v1/models/finite/predict", content=raw, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422, response.text


def test_too_many_rows_gets_413(client: TestClient) -> None:
    fixed_model("many", get_settings().data_dir)
    rows = [[0, 0]] * (get_settings().max_predict_rows + 1)
    _error(client.post("/v1/models/many/predict", json={"inputs": rows}), 413, "too_many_rows")


def test_unknown_model_and_version_are_404(client: TestClient) -> None:
    _error(client.post("/v1/models/ghost/predict", json={"inputs": [[1, 2]]}), 404)
    _error(client.get("/v1/models/ghost"), 404)
    fixed_model("one", get_settings().data_dir)
    _error(client.get("/v1/models/one/versions/7"), 404)
    _error(client.post("/v1/models/one/versions/7/predict", json={"inputs": [[1, 2]]}), 404)


def test_a_tampered_checkpoint_gets_409_not_500(client: TestClient) -> None:
    version = fixed_model("tampered", get_settings().data_dir)
    job_id = client.get(f"/v1/models/tampered/versions/{version}").json()["job_id"]
    path = get_settings().artifacts_dir / "jobs" / job_id / "model.safetensors"
    path.write_bytes(b"not a safetensors file")
    _error(
        client.post("/v1/models/tampered/predict", json={"inputs": [[1, 0]]}),
        409,
        "model_unavailable",
    )
    path.unlink()
    _error(
        client.post("/v1/models/tampered/predict", json={"inputs": [[1, 0]]}),
        409,
        "model_unavailable",
    )


# --- operations -------------------------------------------------------------------------------


def test_readyz_checks_database_broker_and_storage(client: TestClient) -> None:
    body = client.get("/readyz").json()
    assert body == {
        "status": "ready",
        "checks": {"database": "ok", "broker": "ok", "storage": "ok", "artifact_store": "ok"},
    }


def test_metrics_are_prometheus_text(client: TestClient) -> None:
    client.get("/v1/jobs")
    text = client.get("/metrics").text
    assert 'trainserve_http_requests_total{method="GET",route="/v1/jobs",status="200"}' in text
    assert 'trainserve_jobs{status="queued"}' in text


def test_cli_creates_a_scoped_key_that_works_at_once(
    client: TestClient, service_env: dict[str, str]
) -> None:
    result = subprocess.run(
        [str(BIN), "keys", "create", "--database", "--name", "svc", "--scope", "predict"],
        env=base_env() | service_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    key = result.stdout.strip()
    assert key.startswith("ts_")
    headers = {"Authorization": f"Bearer {key}"}
    fixed_model("scoped", get_settings().data_dir)
    assert (
        client.post(
            "/v1/models/scoped/predict", json={"inputs": [[1, 0]]}, headers=headers
        ).status_code
        == 200
    )
    _error(
        client.post("/v1/jobs", json=seed_spec("nope"), headers=headers), 403, "insufficient_scope"
    )

    def cli(*args: str) -> str:
        run = subprocess.run(
            [str(BIN), "keys", *args, "--database"],  # the operator's path: no API here
            env=base_env() | service_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return run.stdout

    listed = [line for line in cli("list").splitlines() if line.split()[1] == key[:10] + "…"]
    assert (
        len(listed) == 1
        and "predict" in listed[0]
        and "(active)" in listed[0]
        and key not in listed[0]
    )
    assert cli("revoke", listed[0].split()[0]).startswith("revoked")
    _error(
        client.post("/v1/models/scoped/predict", json={"inputs": [[1, 0]]}, headers=headers), 401
    )


def test_predict_metrics_per_model(client: TestClient) -> None:
    fixed_model("metered", get_settings().data_dir)
    for _ in range(3):
        assert (
            client.post("/v1/models/metered/predict", json={"inputs": [[1, 0], [0, 1]]}).status_code
            == 200
        )
    client.post("/v1/models/metered/predict", json={"inputs": [[1, 2, 3]]})  # a 422
    text = client.get("/metrics").text
    assert 'trainserve_predict_requests_total{model="default/metered",status="200"} 3.0' in text
    assert 'trainserve_predict_requests_total{model="default/metered",status="422"} 1.0' in text
    assert 'trainserve_predict_rows_total{model="default/metered"} 6.0' in text
    assert 'trainserve_predict_batch_rows_count{model="default/metered"} 3.0' in text
    assert 'trainserve_predict_seconds_count{model="default/metered"} 3.0' in text
    assert "trainserve_model_cache_loads" in text
    assert 'trainserve_model_loads_total{model="default/metered"} 1.0' in text


def test_a_version_an_alias_points_to_cannot_be_deleted(client: TestClient) -> None:
    fixed_model("pruned", get_settings().data_dir)
    fixed_model("pruned", get_settings().data_dir)
    client.put("/v1/models/pruned/aliases/production", json={"version": 1})
    body = _error(client.delete("/v1/models/pruned/versions/1"), 409, "version_in_use")
    assert [d["aliases"] for d in body["details"]] == [["production"]]
    assert client.delete("/v1/models/pruned/versions/2").status_code == 204
    _error(client.get("/v1/models/pruned/versions/2"), 404)
    assert (
        client.post("/v1/models/pruned/predict", json={"inputs": [[1, 0]]}).json()["model_version"]
        == 1
    )
    _error(client.delete("/v1/models/pruned/versions/9"), 404)


def test_start_up_moves_what_it_built_out_of_the_garbage_collectors_reach(
    configured: dict[str, str],
) -> None:
    """A full collection walked every object torch and FastAPI made, with the event loop
    stopped (0.3-0.5 s): predict's p99.9 (bench/README.md). Start-up freezes them."""
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    with TestClient(create_app()):
        assert gc.get_freeze_count() > 100_000
