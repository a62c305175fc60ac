"""The registry's identities, attacked the way the review did: ids reused after a delete, two
tenants racing for one name, the same request eight times at once. Each test runs on
PostgreSQL and on the embedded SQLite, where row ids used to be handed out again."""

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.core.config import get_settings
from app.core.db import session_scope
from app.models import ModelVersion
from tests.support import api_error, fixed_model, seed_spec, unique_name, version_query

ALL = ["jobs:write", "jobs:read", "models:write", "models:read", "predict"]


def project_key(client: TestClient, project: str, scopes: list[str] = ALL) -> dict[str, str]:
    body = {"name": f"{project}-key", "scopes": scopes, "project": project}
    response = client.post("/v1/keys", json=body)
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['key']}"}


def predict(client: TestClient, name: str, headers: dict[str, str]) -> httpx.Response:
    return client.post(f"/v1/models/{name}/predict", json={"inputs": [[1, 0]]}, headers=headers)


def infer(client: TestClient, name: str, headers: dict[str, str]) -> httpx.Response:
    body = {"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [1, 0]}]}
    return client.post(f"/v2/models/{name}/infer", json=body, headers=headers)


def at_once(n: int, call: Callable[[int], Any]) -> list[Any]:
    """n calls released together, as n clients would send them."""
    barrier = threading.Barrier(n)

    def run(i: int) -> Any:
        barrier.wait()
        return call(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def test_a_deleted_version_never_answers_for_another_projects_model(backend: TestClient) -> None:
    """The review's reproduction: A predicts once and deletes its version; B registers a
    model; B's predict and infer must answer with B's model, never A's cached one."""
    a_project, b_project = unique_name("ida"), unique_name("idb")
    a, b = project_key(backend, a_project), project_key(backend, b_project)
    data_dir = get_settings().data_dir
    fixed_model("ma", data_dir, project=a_project, classes=("setosa", "virginica"))
    assert predict(backend, "ma", a).json()["predictions"] == ["setosa"]
    assert backend.delete("/v1/models/ma/versions/1", headers=a).status_code == 204
    fixed_model("mb", data_dir, project=b_project, classes=("cat", "dog"))
    answer = predict(backend, "mb", b)
    assert answer.status_code == 200 and answer.json()["predictions"] == ["cat"], answer.text
    assert infer(backend, "mb", b).json()["outputs"][0]["data"] == ["cat"]
    api_error(predict(backend, "ma", a), 404)
    with session_scope() as session:
        ids = session.scalars(select(ModelVersion.id)).all()
    assert len(ids) == len(set(ids))


def test_two_projects_each_have_their_own_model_of_one_name(backend: TestClient) -> None:
    a_name, b_name = unique_name("shop"), unique_name("bank")
    a, b = project_key(backend, a_name), project_key(backend, b_name)
    data_dir = get_settings().data_dir

    def register(i: int) -> int:  # both projects' jobs finish at the same moment
        project, classes = (a_name, ("cat", "dog")) if i % 2 else (b_name, ("red", "green"))
        return fixed_model("churn", data_dir, project=project, classes=classes)

    at_once(6, register)
    assert predict(backend, "churn", a).json()["predictions"] == ["cat"]
    assert predict(backend, "churn", b).json()["predictions"] == ["red"]
    for headers, project in ((a, a_name), (b, b_name)):
        detail = backend.get("/v1/models/churn", headers=headers).json()
        assert detail["project"] == project
        assert [v["version"] for v in detail["versions"]] == [1, 2, 3]
        assert {v["project"] for v in detail["versions"]} == {project}
        assert [m["name"] for m in backend.get("/v1/models", headers=headers).json()["items"]] == [
            "churn"
        ]


def test_a_name_used_by_another_project_is_neither_taken_nor_revealed(backend: TestClient) -> None:
    """Submitting a job named like another project's model is an ordinary 202: a 409 would
    tell the caller that the name exists elsewhere."""
    owner, other = unique_name("own"), unique_name("oth")
    fixed_model("secret-model", get_settings().data_dir, project=owner)
    response = backend.post(
        "/v1/jobs", json=seed_spec("secret-model"), headers=project_key(backend, other)
    )
    assert response.status_code == 202, response.text
    assert response.json()["model_name"] == "secret-model"
    api_error(backend.get("/v1/models/secret-model", headers=project_key(backend, other)), 404)


def test_version_numbers_are_never_reused_after_a_delete(backend: TestClient) -> None:
    project = unique_name("nums")
    headers = project_key(backend, project)
    data_dir = get_settings().data_dir
    assert [fixed_model("pinned", data_dir, project=project) for _ in range(2)] == [1, 2]
    assert backend.delete("/v1/models/pinned/versions/2", headers=headers).status_code == 204
    assert backend.delete("/v1/models/pinned/versions/1", headers=headers).status_code == 204
    assert fixed_model("pinned", data_dir, project=project) == 3
    api_error(
        backend.post(
            "/v1/models/pinned/versions/2/predict", json={"inputs": [[1, 0]]}, headers=headers
        ),
        404,
    )


def test_jobs_of_one_model_finishing_together_get_distinct_versions(backend: TestClient) -> None:
    """Suspected on PostgreSQL: two registrations computed the same next version and the
    loser, a job that trained fine, failed on the unique constraint."""
    project = unique_name("race")
    data_dir = get_settings().data_dir
    versions = at_once(8, lambda _: fixed_model("raced", data_dir, project=project))
    assert sorted(versions) == list(range(1, 9))
    with session_scope() as session:
        assert len(session.scalars(version_query("raced", project)).all()) == 8


def test_eight_identical_alias_puts_at_once_all_succeed(backend: TestClient) -> None:
    project = unique_name("alias")
    headers = project_key(backend, project)
    fixed_model("aliased", get_settings().data_dir, project=project)
    responses = at_once(
        8,
        lambda _: backend.put(
            "/v1/models/aliased/aliases/canary", json={"version": 1}, headers=headers
        ),
    )
    assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses]
    assert backend.get("/v1/models/aliased", headers=headers).json()["aliases"] == {"canary": 1}


def test_eight_submissions_with_one_idempotency_key_make_one_job(backend: TestClient) -> None:
    headers = project_key(backend, unique_name("idem")) | {"Idempotency-Key": unique_name("retry")}
    responses = at_once(
        8, lambda _: backend.post("/v1/jobs", json=seed_spec("idem-job"), headers=headers)
    )
    assert [r.status_code for r in responses] == [202] * 8, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    listed = backend.get("/v1/jobs", headers=headers).json()["items"]
    assert [j["id"] for j in listed] == [responses[0].json()["id"]]


def test_an_alias_and_a_delete_racing_never_leave_a_dangling_alias(backend: TestClient) -> None:
    project = unique_name("dangle")
    headers = project_key(backend, project)
    data_dir = get_settings().data_dir
    for round_ in range(6):
        version = fixed_model("dangling", data_dir, project=project)
        alias = f"a{round_}"
        put, delete = at_once(
            2,
            lambda i, v=version, al=alias: (
                backend.put(
                    f"/v1/models/dangling/aliases/{al}", json={"version": v}, headers=headers
                )
                if i == 0
                else backend.delete(f"/v1/models/dangling/versions/{v}", headers=headers)
            ),
        )
        assert put.status_code in (200, 404) and delete.status_code in (204, 409), (put, delete)
        assert (put.status_code == 200) != (delete.status_code == 204)  # exactly one wins
        detail = backend.get("/v1/models/dangling", headers=headers).json()
        numbers = {v["version"] for v in detail["versions"]}
        assert set(detail["aliases"].values()) <= numbers


def test_an_admin_key_names_the_project_it_acts_in(backend: TestClient) -> None:
    project = unique_name("adm")
    fixed_model("admin-sees", get_settings().data_dir, project=project, classes=("x", "y"))
    api_error(backend.get("/v1/models/admin-sees"), 404)  # the admin key's own project
    named = {"X-Trainserve-Project": project}
    assert backend.get("/v1/models/admin-sees", headers=named).json()["project"] == project
    assert predict(backend, "admin-sees", named).json()["predictions"] == ["x"]
    assert infer(backend, "admin-sees", named).json()["outputs"][0]["data"] == ["x"]
    listed = {(m["project"], m["name"]) for m in backend.get("/v1/models").json()["items"]}
    assert (project, "admin-sees") in listed  # without the header an admin lists every project
    job = backend.post("/v1/jobs", json=seed_spec("admin-job"), headers=named).json()
    assert backend.get(f"/v1/jobs/{job['id']}", headers=named).status_code == 200
    api_error(backend.get("/v1/models/admin-sees", headers={"X-Trainserve-Project": "../x"}), 400)


def test_a_project_key_cannot_name_another_project(backend: TestClient) -> None:
    mine, theirs = unique_name("mine"), unique_name("theirs")
    fixed_model("theirs-model", get_settings().data_dir, project=theirs)
    headers = project_key(backend, mine) | {"X-Trainserve-Project": theirs}
    for response in (
        backend.get("/v1/models/theirs-model", headers=headers),
        predict(backend, "theirs-model", headers),
        backend.get("/v1/jobs", headers=headers),
    ):
        assert response.status_code == 403, response.text
    own = project_key(backend, mine) | {"X-Trainserve-Project": mine}
    assert backend.get("/v1/jobs", headers=own).status_code == 200


def test_a_version_deleted_by_another_process_stops_answering_within_the_cache_time(
    backend: TestClient,
) -> None:
    """Deleted through another API process (here: straight in the database, unseen by this
    one): this process answers with it for at most PREDICT_CACHE_S, then 404."""
    project = unique_name("elsewhere")
    headers = project_key(backend, project)
    fixed_model("gone-elsewhere", get_settings().data_dir, project=project)
    assert predict(backend, "gone-elsewhere", headers).status_code == 200
    with session_scope() as session:
        row = session.scalars(version_query("gone-elsewhere", project)).one()
        session.delete(row)
    time.sleep(get_settings().predict_cache_s + 0.1)
    api_error(predict(backend, "gone-elsewhere", headers), 404)
    gone = infer(backend, "gone-elsewhere", headers)
    assert gone.status_code == 404 and "error" in gone.json()


def walk(
    client: TestClient,
    path: str,
    headers: dict[str, str] | None = None,
    cursor: str | None = None,
) -> list[Any]:
    """Every item of a collection from `cursor` on, two per page, as a client walks it."""
    items: list[Any] = []
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get(path, params=params, headers=headers or {}).json()
        assert set(page) == {"items", "next_cursor"} and len(page["items"]) <= 2
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return items


def test_models_and_keys_are_pages_that_neither_skip_nor_repeat(backend: TestClient) -> None:
    """Models and keys answer the shape every collection does; a model registered while a
    client walks the pages is never a reason to see another twice, and a project's walk
    never reaches another project's models."""
    project, other = unique_name("pages"), unique_name("other")
    headers = project_key(backend, project)
    data_dir = get_settings().data_dir
    names = [unique_name("m") for _ in range(5)]
    for name in names:
        fixed_model(name, data_dir, project=project)
    fixed_model(unique_name("theirs"), data_dir, project=other)
    first = backend.get("/v1/models", params={"limit": 2}, headers=headers).json()
    fixed_model(unique_name("late"), data_dir, project=project)  # newer than the walk's cursor
    rest = walk(backend, "/v1/models", headers, cursor=first["next_cursor"])
    walked = [m["name"] for m in first["items"] + rest]
    assert sorted(walked) == sorted(names) and len(walked) == len(set(walked))
    assert {m["latest_version"] for m in first["items"] + rest} == {1}
    keys = walk(backend, "/v1/keys")
    assert len({k["id"] for k in keys}) == len(keys) >= 2
    assert all("key" not in k and "key_hash" not in k for k in keys)
    api_error(backend.get("/v1/models", params={"cursor": "not-a-cursor"}), 422, "invalid_cursor")
    api_error(backend.get("/v1/keys", params={"limit": 0}), 422)


def test_a_key_without_a_name_is_named_for_its_project_and_scopes(backend: TestClient) -> None:
    made = backend.post("/v1/keys", json={"scopes": ["predict", "models:read"], "project": "shop"})
    assert made.status_code == 201, made.text
    assert made.json()["name"] == "shop predict+models:read"
    api_error(backend.post("/v1/keys", json={"name": "", "scopes": ["predict"]}), 422)
