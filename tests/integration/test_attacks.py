"""One test per attack class that hurt this field: unauthenticated control APIs, URLs the
server would fetch, paths out of their root, pickles, bombs, and limits."""

import io
import pickle
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings, get_settings
from app.core.db import session_scope
from app.main import create_app
from tests.dataset_files import image_bytes
from tests.integration.test_api import fixed_model
from tests.support import seed_spec, unique_name, version_query


class Payload:
    """Unpickling this writes the marker file: the proof that something was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.write_text, (self.marker, "pwned"))


def test_job_submission_needs_a_key_with_the_right_scope(api: TestClient) -> None:
    assert (
        api.post("/v1/jobs", json=seed_spec("x"), headers={"Authorization": ""}).status_code == 401
    )
    reader = api.post("/v1/keys", json={"name": "r", "scopes": ["predict"]}).json()["key"]
    denied = api.post(
        "/v1/jobs", json=seed_spec("x"), headers={"Authorization": f"Bearer {reader}"}
    )
    assert denied.status_code == 403


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "file:///etc/passwd",
        "https://example.com/model.pt",
    ],
)
@pytest.mark.parametrize("field", ["builtin", "id"])
def test_urls_in_dataset_fields_are_refused_and_nothing_is_fetched(
    api: TestClient, url: str, field: str
) -> None:
    response = api.post("/v1/jobs", json={**seed_spec("fetch"), "dataset": {field: url}})
    assert response.status_code == 422 and response.json()["error"]["message"].startswith(
        f"dataset.{field}"
    )


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "/etc/passwd", "%2e%2e%2fetc", "a/b", "..", "http://x"]
)
def test_paths_in_names_are_refused(api: TestClient, name: str) -> None:
    assert api.post("/v1/jobs", json=seed_spec(name)).status_code == 422
    key = api.post("/v1/keys", json={"name": "k", "scopes": ["jobs:read"], "project": name})
    assert key.status_code == 422


@pytest.mark.parametrize(
    "path",
    [
        "/v1/jobs/..%2f..%2fetc%2fpasswd",
        "/v1/datasets/%2e%2e",
        "/v1/jobs/%00",
        "/v1/models/..%2f..%2fetc/versions/1",
        "/v1/models/x/versions/..%2f1/predict",
    ],
)
def test_paths_in_ids_never_reach_the_filesystem(api: TestClient, path: str) -> None:
    response = api.request(
        "POST" if path.endswith("predict") else "GET", path, json={"inputs": [[1]]}
    )
    assert response.status_code in (404, 422), response.text


def test_a_zip_entry_outside_its_folder_is_refused(api: TestClient) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("cats/a.png", image_bytes())
        archive.writestr("../../evil/b.png", image_bytes())
    response = api.post(
        "/v1/datasets",
        files={"file": ("x.zip", buffer.getvalue())},
        data={"name": unique_name("slip"), "format": "images-zip"},
    )
    assert response.status_code == 422 and response.json()["error"]["code"] == "unsafe_path"
    assert not (get_settings().data_dir.parent / "evil").exists()


def test_a_zip_bomb_is_refused_before_it_is_inflated(api: TestClient) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("cats/a.png", b"\0" * (64 * 1024 * 1024))  # 64 MiB of zeros, ~64 kB zipped
    settings = Settings(max_zip_uncompressed_bytes=8 * 1024 * 1024)
    app = create_app(settings)
    app.dependency_overrides[get_settings] = lambda: settings
    with TestClient(app) as small:
        small.headers.update(api.headers)
        response = small.post(
            "/v1/datasets",
            files={"file": ("bomb.zip", buffer.getvalue())},
            data={"name": unique_name("bomb"), "format": "images-zip"},
        )
    assert response.status_code == 413, response.text


def test_a_pickle_in_an_npz_upload_is_never_unpickled(api: TestClient, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    buffer = io.BytesIO()
    import numpy as np

    np.savez(buffer, X=np.array([Payload(marker)] * 4, dtype=object), y=np.array([0, 1, 0, 1]))
    response = api.post(
        "/v1/datasets",
        files={"file": ("p.npz", buffer.getvalue())},
        data={"name": unique_name("pickled"), "format": "npz"},
    )
    assert 400 <= response.status_code < 500 and not marker.exists()


def test_a_pickle_planted_as_a_checkpoint_is_refused(api: TestClient, tmp_path: Path) -> None:
    fixed_model("planted", get_settings().data_dir)
    with session_scope() as session:
        path = session.scalars(version_query("planted")).one().checkpoint_path
    marker = tmp_path / "marker"
    (get_settings().artifacts_dir / path).write_bytes(pickle.dumps(Payload(marker)))
    response = api.post("/v1/models/planted/predict", json={"inputs": [[1, 0]]})
    assert response.status_code == 409 and not marker.exists()


def test_wrong_content_types_and_oversized_bodies(api: TestClient) -> None:
    wrong = api.post("/v1/jobs", content=b"model_name=x", headers={"content-type": "text/plain"})
    assert wrong.status_code in (400, 415, 422)
    huge = b'{"inputs": [' + b"[1]," * (3 * 1024 * 1024) + b"[1]]}"
    assert (
        api.post(
            "/v1/models/x/predict", content=huge, headers={"content-type": "application/json"}
        ).status_code
        == 413
    )


def test_too_many_active_jobs_in_a_project_is_429_with_retry_after(api: TestClient) -> None:
    settings = Settings(max_active_jobs_per_project=2)
    app = create_app(settings)
    app.dependency_overrides[get_settings] = lambda: settings
    key = api.post(
        "/v1/keys", json={"name": "busy", "scopes": ["jobs:write"], "project": "busy"}
    ).json()["key"]
    with TestClient(app) as client:
        client.headers.update({"Authorization": f"Bearer {key}"})
        first = client.post(
            "/v1/jobs", json=seed_spec("busy-1"), headers={"Idempotency-Key": "one"}
        )
        assert first.status_code == 202
        assert client.post("/v1/jobs", json=seed_spec("busy-2")).status_code == 202
        third = client.post("/v1/jobs", json=seed_spec("busy-3"))
        assert third.status_code == 429 and third.headers["Retry-After"] == "30"
        retry = client.post(
            "/v1/jobs", json=seed_spec("busy-1"), headers={"Idempotency-Key": "one"}
        )
        assert (
            retry.status_code == 202 and retry.json()["id"] == first.json()["id"]
        )  # a retry is answered
