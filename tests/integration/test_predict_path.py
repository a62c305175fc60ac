"""The predict hot path (app/serving/front_door.py, codecs.py, lookup.py) in-process on real
PostgreSQL: what it caches and for how long, the errors its hand-written parsing gives, and
that it answers and documents its paths as FastAPI's routes would."""

import dataclasses
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from app.core.config import Settings, get_settings
from app.core.db import session_scope
from app.main import create_app
from app.models import ApiKey, ModelAlias, ModelVersion
from app.services.auth import hash_key
from app.serving import codecs
from app.serving.front_door import DOORS
from tests.integration.conftest import ADMIN_KEY
from tests.support import api_error, fixed_model, version_query

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
CACHE_S = 0.5


@pytest.fixture(scope="module")
def client(configured: dict[str, str]) -> Iterator[TestClient]:
    settings = Settings(predict_cache_s=CACHE_S)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        c.headers.update(AUTH)
        yield c


def predict(client: TestClient, path: str, **kwargs: Any) -> Any:
    kwargs.setdefault("json", {"inputs": [[1, 0]]})
    return client.post(f"/v1/models/{path}/predict", **kwargs)


def served_version(client: TestClient, path: str) -> int:
    response = predict(client, path)
    assert response.status_code == 200, response.text
    return int(response.json()["model_version"])


def move_alias_elsewhere(name: str, version: int) -> None:
    """As another API process would: straight in the database, unseen by this one."""
    with session_scope() as session:
        target = session.scalars(version_query(name).where(ModelVersion.version == version)).one()
        session.execute(
            update(ModelAlias)
            .where(ModelAlias.model_id == target.model_id, ModelAlias.alias == "production")
            .values(version_id=target.id)
        )


def test_an_alias_moved_through_this_process_is_served_by_the_next_request(
    client: TestClient,
) -> None:
    data_dir = get_settings().data_dir
    for _ in range(2):
        fixed_model("swap-here", data_dir)
    assert client.put("/v1/models/swap-here/aliases/production", json={"version": 1}).is_success
    assert served_version(client, "swap-here") == 1
    assert client.put("/v1/models/swap-here/aliases/production", json={"version": 2}).is_success
    assert served_version(client, "swap-here") == 2
    assert client.delete("/v1/models/swap-here/aliases/production").status_code == 204
    assert client.delete("/v1/models/swap-here/versions/1").status_code == 204
    api_error(predict(client, "swap-here/versions/1"), 404)


def test_a_change_made_elsewhere_is_served_within_predict_cache_s(client: TestClient) -> None:
    data_dir = get_settings().data_dir
    for _ in range(2):
        fixed_model("swap-there", data_dir)
    assert client.put("/v1/models/swap-there/aliases/production", json={"version": 1}).is_success
    assert served_version(client, "swap-there") == 1
    move_alias_elsewhere("swap-there", 2)
    moved_at = time.monotonic()
    assert served_version(client, "swap-there") == 1  # this process read it under a second ago
    while served_version(client, "swap-there") == 1:
        assert time.monotonic() - moved_at < CACHE_S + 1.0, "the move was never seen"
        time.sleep(0.05)
    assert time.monotonic() - moved_at >= CACHE_S * 0.5


def test_with_predict_cache_s_0_every_request_reads_the_database(configured: Any) -> None:
    for _ in range(2):
        fixed_model("uncached", get_settings().data_dir)
    with TestClient(create_app(Settings(predict_cache_s=0)), headers=AUTH) as client:
        assert client.put("/v1/models/uncached/aliases/production", json={"version": 1}).is_success
        assert served_version(client, "uncached") == 1
        move_alias_elsewhere("uncached", 2)
        assert served_version(client, "uncached") == 2


def test_a_key_revoked_through_the_api_stops_predicting_at_once(client: TestClient) -> None:
    fixed_model("revoked", get_settings().data_dir)
    created = client.post("/v1/keys", json={"name": "p", "scopes": ["predict"]}).json()
    headers = {"Authorization": f"Bearer {created['key']}"}
    assert predict(client, "revoked", headers=headers).status_code == 200
    assert client.delete(f"/v1/keys/{created['id']}").status_code == 204
    api_error(predict(client, "revoked", headers=headers), 401, "invalid_key")


def test_a_key_revoked_elsewhere_stops_predicting_within_predict_cache_s(
    client: TestClient,
) -> None:
    fixed_model("revoked-there", get_settings().data_dir)
    created = client.post("/v1/keys", json={"name": "p", "scopes": ["predict"]}).json()
    headers = {"Authorization": f"Bearer {created['key']}"}
    assert predict(client, "revoked-there", headers=headers).status_code == 200
    with session_scope() as session:  # as `trainserve keys revoke` does, in its own process
        session.execute(
            update(ApiKey)
            .where(ApiKey.key_hash == hash_key(created["key"]))
            .values(revoked_at=ApiKey.created_at)
        )
    revoked_at = time.monotonic()
    while predict(client, "revoked-there", headers=headers).status_code == 200:
        assert time.monotonic() - revoked_at < CACHE_S + 1.0, "the revocation was never seen"
        time.sleep(0.05)
    api_error(predict(client, "revoked-there", headers=headers), 401, "invalid_key")


def test_a_key_without_the_predict_scope_is_403_even_when_cached(client: TestClient) -> None:
    fixed_model("scoped", get_settings().data_dir)
    created = client.post("/v1/keys", json={"name": "r", "scopes": ["models:read"]}).json()
    headers = {"Authorization": f"Bearer {created['key']}"}
    for _ in range(2):
        api_error(predict(client, "scoped", headers=headers), 403, "insufficient_scope")
    assert client.get("/v1/models/scoped", headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("body", "headers", "status", "code", "needle"),
    [
        (b'{"inputs": [[1, 0]]', {}, 400, "invalid_json", "not valid JSON"),
        (b"", {}, 422, "validation_error", "body: Field required"),
        (b"[[1, 0]]", {}, 422, "validation_error", "body: Input should be an object"),
        (b'{"inputs": []}', {}, 422, "validation_error", "inputs: List should have at least 1"),
        (b'{"inputs": "x"}', {}, 422, "validation_error", "inputs: Input should be a valid array"),
        (b'{"inputs": [[1, 0]], "x": 1}', {}, 422, "validation_error", "x: Extra inputs"),
        (b'{"inputs": [[1, true]]}', {}, 422, "validation_error", "got bool"),
        (b'{"inputs": [[1, 1' + b"0" * 400 + b"]]}", {}, 422, "validation_error", "finite"),
        (
            b'{"inputs": [[1, 0]]}',
            {"content-type": "text/plain"},
            415,
            "unsupported_media_type",
            "",
        ),
    ],
)
def test_bad_bodies_get_the_api_s_error_shapes(
    client: TestClient, body: bytes, headers: dict[str, str], status: int, code: str, needle: str
) -> None:
    fixed_model("bodies", get_settings().data_dir)
    headers = {"content-type": "application/json", **headers}
    error = api_error(predict(client, "bodies", content=body, headers=headers), status, code)
    assert needle in error["message"]


def test_a_json_content_type_with_parameters_or_a_suffix_is_accepted(client: TestClient) -> None:
    fixed_model("typed", get_settings().data_dir)
    for content_type in ("application/json; charset=utf-8", "application/vnd.api+json"):
        headers = {"content-type": content_type}
        response = predict(client, "typed", content=b'{"inputs": [[1, 0]]}', headers=headers)
        assert response.status_code == 200, response.text


def test_the_key_is_checked_before_the_body_or_the_path(client: TestClient) -> None:
    anonymous = {"Authorization": ""}
    for path, body in (("typed", b"{"), ("-bad-", b'{"inputs": [[1, 0]]}')):
        response = predict(client, path, content=body, headers=anonymous)
        api_error(response, 401, "missing_key")


def test_malformed_names_and_refs_are_422_naming_the_path_parameter(client: TestClient) -> None:
    api_error(predict(client, "-bad-"), 422, "validation_error")
    error = api_error(predict(client, "ok/versions/.x"), 422, "validation_error")
    assert error["message"].startswith("ref:")


def test_other_methods_on_a_predict_path_are_405_in_the_api_s_shape(client: TestClient) -> None:
    for method, path in (
        ("GET", "/v1/models/anything/predict"),
        ("PUT", "/v1/models/anything/versions/1/predict"),
        ("DELETE", "/v2/models/anything/infer"),
    ):
        response = client.request(method, path)
        assert response.headers["allow"] == "POST"
        if path.startswith("/v2/"):
            assert response.status_code == 405 and set(response.json()) == {"error"}
        else:
            api_error(response, 405, "method_not_allowed")


def test_a_trailing_slash_on_a_predict_path_redirects_as_on_every_route(
    client: TestClient,
) -> None:
    for path in (
        "/v1/models/anything/predict/",
        "/v1/models/anything/versions/1/predict/",
        "/v2/models/anything/infer/",
    ):
        response = client.post(path, json={"inputs": [[1, 0]]}, follow_redirects=False)
        assert response.status_code == 307
        assert response.headers["location"].endswith(path.rstrip("/"))
    assert client.post("/v1/models/anything/predicts/").status_code == 404


def test_the_docs_list_every_predict_path_from_the_front_door_s_table(
    client: TestClient,
) -> None:
    openapi = client.get("/openapi.json").json()
    schemas = openapi["components"]["schemas"]
    for door in DOORS:
        operation = openapi["paths"][door.path]["post"]
        assert [p["name"] for p in operation["parameters"]] == door.params
        for ref in (
            operation["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        ):
            assert ref.rsplit("/", 1)[1] in schemas
    operation_ids = [
        op["operationId"] for item in openapi["paths"].values() for op in item.values()
    ]
    assert len(operation_ids) == len(set(operation_ids))
    assert "InferTensor" in schemas  # nested models are components too, with no dangling $ref
    assert "#/$defs/" not in client.get("/openapi.json").text


def test_a_bug_on_the_predict_path_is_a_500_in_the_api_s_shape(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixed_model("buggy", get_settings().data_dir)

    def broken(*args: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(codecs.PredictJson, "encode", broken)
    api_error(predict(client, "buggy"), 500, "internal_error")
    monkeypatch.undo()
    assert predict(client, "buggy").status_code == 200


def test_http_metrics_label_predicts_by_route_template(client: TestClient) -> None:
    fixed_model("labelled", get_settings().data_dir)
    assert predict(client, "labelled").status_code == 200
    text = client.get("/metrics").text
    assert (
        'trainserve_http_requests_total{method="POST",route="/v1/models/{name}/predict",'
        'status="200"}' in text
    )
    assert 'route="/v1/models/labelled/predict"' not in text


def test_requests_for_unknown_models_share_one_metrics_series(client: TestClient) -> None:
    for name in ("nothing-1", "nothing-2"):
        api_error(predict(client, name), 404)
    text = client.get("/metrics").text
    assert 'trainserve_predict_requests_total{model="-",status="404"}' in text
    assert 'model="nothing-1"' not in text


def test_v2_infer_takes_the_same_front_door_with_the_protocol_s_error_shape(
    client: TestClient,
) -> None:
    fixed_model("infer-lane", get_settings().data_dir)
    tensor = {"name": "input", "shape": [2, 2], "datatype": "FP32", "data": [[1, 0], [0, 2]]}
    body = client.post("/v2/models/infer-lane/infer", json={"inputs": [tensor]}).json()
    assert body["model_name"] == "infer-lane" and body["outputs"][0]["data"] == ["cat", "dog"]
    for path, headers, status in (
        ("/v2/models/infer-lane/infer", {"Authorization": ""}, 401),
        ("/v2/models/no-such-model/infer", {}, 404),
        ("/v2/models/-bad-/infer", {}, 422),
        ("/v2/models/infer-lane/versions/9/infer", {}, 404),
    ):
        response = client.post(path, json={"inputs": [tensor]}, headers=headers)
        assert response.status_code == status, response.text
        assert set(response.json()) == {"error"} and response.json()["error"]
    text = client.get("/metrics").text
    assert 'route="/v2/models/{name}/infer",status="200"' in text


def test_a_request_in_flight_finishes_on_the_version_it_started_with(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = get_settings().data_dir
    for _ in range(2):
        fixed_model("in-flight", data_dir)
    serving = client.app.state.serving  # type: ignore[attr-defined]
    # Even cheap passes on the forward thread (app/serving/batcher.py runs them on the event
    # loop), so that the busy thread below holds the requests in flight.
    monkeypatch.setattr(serving, "policy", dataclasses.replace(serving.policy, inline_max_s=0.0))
    assert client.put("/v1/models/in-flight/aliases/production", json={"version": 1}).is_success
    assert served_version(client, "in-flight") == 1  # loaded, so the request below only waits
    release = threading.Event()
    serving.executor.submit(release.wait, 30)  # the forward thread is busy: batches queue up
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(served_version, client, "in-flight")
        time.sleep(0.3)  # the first request is resolved and queued behind the busy thread
        assert not first.done()
        moved = client.put("/v1/models/in-flight/aliases/production", json={"version": 2})
        assert moved.is_success
        second = pool.submit(served_version, client, "in-flight")
        time.sleep(0.3)
        release.set()
        assert (first.result(10), second.result(10)) == (1, 2)
