"""Dataset uploads over HTTP, in-process on real PostgreSQL: each format stored with its schema,
each bad upload refused with its own 4xx and nothing left behind, list/get/delete, jobs that
name a dataset, and the worker's loader reading back exactly what was uploaded."""

import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.core.config import Settings, get_settings
from app.core.db import session_scope
from app.core.files import sha256_file
from app.datasets.parsing import UploadOptions
from app.datasets.stored import StoredDatasetError, load_stored
from app.main import create_app
from app.models import Dataset
from app.schemas.dataset import DataKind, DatasetFormat
from app.schemas.job import DatasetRef, Task
from app.services.auth import Principal, create_key
from app.services.dataset_catalog import DatasetInfo, create_dataset, dataset_info, delete_dataset
from tests.dataset_files import (
    class_images,
    csv_bytes,
    image_bytes,
    npz_bytes,
    pickle_npz,
    zip_bytes,
)
from tests.integration.conftest import ADMIN_KEY
from tests.support import seed_spec, unique_name

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
CSV = b"a,y\n1,p\n2,q\n"


@pytest.fixture(scope="module")
def client(configured: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=False) as c:
        c.headers.update(AUTH)
        yield c


@pytest.fixture
def limited(configured: dict[str, str]) -> Iterator[TestClient]:
    """The app with tiny limits: 1 KiB request bodies, 8 KiB uploads, zips of 8 files/20 KB."""
    settings = Settings(
        max_request_bytes=1024,
        max_json_body_bytes=1024,
        max_upload_bytes=8192,
        max_zip_files=8,
        max_zip_uncompressed_bytes=20_000,
    )
    app = create_app(settings)
    app.dependency_overrides[get_settings] = lambda: settings
    with TestClient(app, raise_server_exceptions=False) as c:
        c.headers.update(AUTH)
        yield c


def upload(
    client: TestClient, data: bytes, fmt: str, name: str | None = None, **form: Any
) -> httpx.Response:
    fields = {
        "name": name or unique_name("upload"),
        "format": fmt,
        **{k: str(v) for k, v in form.items()},
    }
    return client.post("/v1/datasets", files={"file": ("upload.bin", data)}, data=fields)


def created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()["error"]
    assert set(body) == {"code", "message", "details"} and body["message"]
    if code is not None:
        assert body["code"] == code, body
    return body


def datasets_dir() -> Path:
    return get_settings().artifacts_dir / "datasets"


def stored() -> tuple[set[str], int]:
    """Every file under artifacts/datasets, and the number of dataset rows."""
    root = datasets_dir()
    files = {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()
    with session_scope() as session:
        rows = session.scalar(select(func.count()).select_from(Dataset))
    return files, int(rows or 0)


def assert_on_disk(body: dict[str, Any]) -> Path:
    folder = datasets_dir() / body["id"]
    assert [p.name for p in folder.iterdir()] == ["data.npz"]
    path = folder / "data.npz"
    assert sha256_file(path) == body["sha256"] and path.stat().st_size == body["size_bytes"]
    return path


# --- each format ----------------------------------------------------------------------------


def test_csv_with_string_labels_and_categories(client: TestClient) -> None:
    data = csv_bytes(
        {
            "age": [31, 45, 22, 60, 38, 27],
            "city": ["oslo", "rome", "oslo", "lima", "rome", "lima"],
            "income": [3.5, 4.0, 2.2, 5.1, 3.9, 2.8],
            "plan": ["gold", "basic", "basic", "gold", "pro", "basic"],
        }
    )
    body = created(upload(client, data, "csv", name="../../not a path", target="plan"))
    assert body["name"] == "../../not a path" and body["format"] == "csv"
    assert (body["kind"], body["task"]) == ("tabular", "classification")
    schema = body["schema"]
    assert schema["rows"] == 6
    assert schema["features"] == ["age", "city=lima", "city=oslo", "city=rome", "income"]
    assert schema["categorical"] == {"city": ["lima", "oslo", "rome"]}
    assert schema["classes"] == ["basic", "gold", "pro"]
    assert schema["class_counts"] == {"basic": 3, "gold": 2, "pro": 1}
    assert schema["upload"] == {"bytes": len(data), "sha256": schema["upload"]["sha256"]}
    assert_on_disk(body)

    raw = load_stored(get_settings(), body["id"])
    assert raw.kind == DataKind.tabular and raw.classes == ["basic", "gold", "pro"]
    assert raw.feature_names == schema["features"] and raw.texts is None
    assert raw.y.dtype == np.int64 and raw.y.tolist() == [1, 0, 0, 1, 2, 0]
    assert raw.x is not None and raw.x.dtype == np.float32
    assert raw.x[1].tolist() == pytest.approx([45, 0, 0, 1, 4.0])


def test_csv_regression_and_mean_imputation(client: TestClient) -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=30).round(4).tolist()
    a[3] = None
    data = csv_bytes({"a": a, "price": (rng.normal(size=30) * 100).round(2).tolist()})
    error(upload(client, data, "csv", target="price"), 422, "invalid_dataset")
    body = created(upload(client, data, "csv", target="price", impute="mean"))
    assert (body["task"], body["schema"]["classes"]) == ("regression", None)
    assert body["schema"]["impute"]["filled"] == {"a": 1}
    raw = load_stored(get_settings(), body["id"])
    assert raw.classes is None and raw.y.dtype == np.float32
    assert raw.x is not None and raw.x[3, 0] == pytest.approx(
        body["schema"]["impute"]["values"]["a"]
    )


def test_npz_tabular_and_images(client: TestClient) -> None:
    x = np.random.default_rng(2).normal(size=(8, 3))
    body = created(upload(client, npz_bytes(X=x, y=np.array([5, 7] * 4)), "npz"))
    assert body["schema"]["classes"] == [5, 7] and body["schema"]["features"] == ["x0", "x1", "x2"]
    raw = load_stored(get_settings(), body["id"])
    assert raw.x is not None and np.array_equal(raw.x, x.astype(np.float32))
    assert raw.y.tolist() == [0, 1] * 4

    pixels = np.random.default_rng(3).integers(0, 256, (6, 1, 9, 7), dtype=np.uint8)
    body = created(upload(client, npz_bytes(X=pixels, y=np.array(["a", "b", "c"] * 2)), "npz"))
    assert (body["kind"], body["schema"]["image_shape"]) == ("image", [1, 9, 7])
    raw = load_stored(get_settings(), body["id"])
    assert raw.kind == DataKind.image and raw.classes == ["a", "b", "c"]
    assert raw.x is not None and np.array_equal(raw.x, pixels)


def test_images_zip(client: TestClient) -> None:
    entries = class_images(("cats", "dogs"), per_class=4)
    body = created(upload(client, zip_bytes(entries), "images-zip", image_size=12))
    schema = body["schema"]
    assert (body["kind"], schema["image_shape"], schema["rows"]) == ("image", [3, 12, 12], 8)
    assert schema["classes"] == ["cats", "dogs"]
    assert schema["class_counts"] == {"cats": 4, "dogs": 4}
    assert_on_disk(body)
    raw = load_stored(get_settings(), body["id"])
    assert raw.x is not None and raw.x.shape == (8, 3, 12, 12) and raw.x.dtype == np.uint8
    assert raw.y.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]

    gray = created(upload(client, zip_bytes(class_images(mode="L")), "images-zip"))
    assert gray["schema"]["image_shape"] == [1, 32, 32]
    forced = created(upload(client, zip_bytes(entries), "images-zip", channels=1))
    assert forced["schema"]["image_shape"] == [1, 32, 32]


def test_text_csv(client: TestClient) -> None:
    texts = ["loved it", "awful, just awful", "fine", "great fun", "dull", "NA"]
    data = csv_bytes({"text": texts, "label": ["pos", "neg", "pos", "pos", "neg", "neg"]})
    body = created(upload(client, data, "text-csv"))
    schema = body["schema"]
    assert (body["kind"], schema["rows"], schema["classes"]) == ("text", 6, ["neg", "pos"])
    assert schema["mean_length"] == pytest.approx(sum(map(len, texts)) / 6, abs=0.01)
    raw = load_stored(get_settings(), body["id"])
    assert raw.kind == DataKind.text and raw.texts == texts and raw.x is None
    assert all(type(t) is str for t in raw.texts)
    assert raw.y.tolist() == [1, 0, 1, 1, 0, 0]


# --- bad uploads: each its own 4xx, nothing left behind --------------------------------------

GOOD_IMAGES = class_images()
BAD_UPLOADS = [
    pytest.param(image_bytes(), "csv", {"target": "y"}, 422, "not a CSV", id="not-a-csv"),
    pytest.param(
        b"a,b\n1,2\n3,4\n",
        "csv",
        {"target": "label"},
        422,
        "target: column 'label'",
        id="no-target",
    ),
    pytest.param(
        b"a,y\n1,x\n2,x\n", "csv", {"target": "y"}, 422, "only one class ('x')", id="one-class"
    ),
    pytest.param(
        b"a,y\n1,x\n,z\n3,x\n", "csv", {"target": "y"}, 422, "impute=mean", id="nan-no-impute"
    ),
    pytest.param(
        zip_bytes({**GOOD_IMAGES, "cats/readme.txt": b"hi"}),
        "images-zip",
        {},
        422,
        "'cats/readme.txt': not a PNG or JPEG",
        id="zip-non-image",
    ),
    pytest.param(
        zip_bytes({**GOOD_IMAGES, "../evil.png": image_bytes()}),
        "images-zip",
        {},
        422,
        "unsafe path in the zip: '../evil.png'",
        id="zip-dotdot",
    ),
    pytest.param(
        zip_bytes({**GOOD_IMAGES, "/tmp/evil.png": image_bytes()}),
        "images-zip",
        {},
        422,
        "'/tmp/evil.png' has an absolute path",
        id="zip-absolute",
    ),
    pytest.param(
        zip_bytes(class_images(("cats",))), "images-zip", {}, 422, "one class", id="zip-one-class"
    ),
    pytest.param(b"PK\x03\x04junk", "images-zip", {}, 422, "not a zip", id="not-a-zip"),
    pytest.param(
        npz_bytes(X=np.zeros((2, 2))), "npz", {}, 422, "'X' and 'y' are required", id="npz-no-y"
    ),
    pytest.param(
        b"text,label\nhi,a\n ,b\n", "text-csv", {}, 422, "1 rows have empty text", id="empty-text"
    ),
    pytest.param(b"", "csv", {"target": "y"}, 422, "the file is empty", id="empty-file"),
    pytest.param(b"a,y\n1,2\n", "parquet", {"target": "y"}, 422, "format", id="wrong-format"),
    pytest.param(b"a,y\n1,2\n", "csv", {"task": "ranking"}, 422, "task", id="wrong-task"),
]


@pytest.mark.parametrize(("data", "fmt", "form", "status", "message"), BAD_UPLOADS)
def test_bad_uploads_get_a_4xx_that_says_why_and_leave_nothing(
    client: TestClient, data: bytes, fmt: str, form: dict[str, Any], status: int, message: str
) -> None:
    before = stored()
    body = error(upload(client, data, fmt, **form), status)
    assert message in body["message"], body
    assert stored() == before


def test_an_npz_pickle_is_never_unpickled(client: TestClient, tmp_path: Path) -> None:
    control, marker = tmp_path / "control", tmp_path / "marker"
    np.load(io.BytesIO(pickle_npz(control)), allow_pickle=True)["X"]  # the payload is live
    assert control.exists()
    before = stored()
    body = error(upload(client, pickle_npz(marker), "npz"), 422, "invalid_dataset")
    assert "holds Python objects" in body["message"]
    assert not marker.exists() and stored() == before


def test_upload_limits(limited: TestClient) -> None:
    before = stored()
    big = b"a,y\n" + b"1,0\n2,1\n" * 1200  # 9.6 KB: over the 8 KiB upload limit
    body = error(upload(limited, big, "csv", target="y"), 413, "payload_too_large")
    assert "larger than 8192 bytes" in body["message"]
    # a body past the limit and its form allowance is stopped before it is read
    huge = b"a,y\n" + b"1,0\n" * 40_000
    error(upload(limited, huge, "csv", target="y"), 413, "payload_too_large")
    assert stored() == before
    # the upload route has its own limit: 2 KB passes although other bodies stop at 1 KiB
    small = b"a,y\n" + b"1,0\n2,1\n" * 250
    created(upload(limited, small, "csv", target="y"))
    error(limited.post("/v1/jobs", json={**seed_spec("big"), "pad": "x" * 2000}), 413)


def test_chunked_bodies_over_the_limit_get_413(limited: TestClient) -> None:
    """No Content-Length: the body is counted as it streams in (and 413 is not lost as 400)."""

    def chunks(head: bytes, kib: int) -> Iterator[bytes]:
        yield head
        for _ in range(kib):
            yield b"x" * 1024

    before = stored()
    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
    multipart = {"content-type": "multipart/form-data; boundary=b"}
    response = limited.post("/v1/datasets", content=chunks(head, 200), headers=multipart)
    error(response, 413, "payload_too_large")
    assert stored() == before
    json_body = {"content-type": "application/json"}
    response = limited.post("/v1/jobs", content=chunks(b'{"pad": "', 4), headers=json_body)
    error(response, 413, "payload_too_large")


def test_zip_limits(limited: TestClient) -> None:
    before = stored()
    many = zip_bytes({f"c{i % 2}/{i}.png": image_bytes(4, 4) for i in range(9)})
    body = error(upload(limited, many, "images-zip"), 413, "payload_too_large")
    assert "9 entries" in body["message"]
    # a zip bomb in miniature: 30 KB of zeros packs into a few hundred bytes
    bomb = zip_bytes({"c0/a.png": image_bytes(4, 4), "c1/b.png": b"\x00" * 30_000})
    body = error(upload(limited, bomb, "images-zip"), 413, "payload_too_large")
    assert "unpacks to" in body["message"]
    assert stored() == before


# --- read, list, delete, and jobs that name a dataset ----------------------------------------


def test_list_get_delete(client: TestClient) -> None:
    ids = [
        created(upload(client, b"a,y\n1,p\n2,q\n", "csv", name=f"page-{i}", target="y"))["id"]
        for i in range(3)
    ]
    first = client.get("/v1/datasets", params={"limit": 2}).json()
    assert [d["id"] for d in first["items"]] == ids[::-1][:2] and first["next_cursor"]
    second = client.get("/v1/datasets", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert second["items"][0]["id"] == ids[0]
    error(client.get("/v1/datasets", params={"cursor": "nope"}), 422, "invalid_cursor")

    fetched = client.get(f"/v1/datasets/{ids[0]}").json()
    assert fetched["name"] == "page-0" and fetched["schema"]["classes"] == ["p", "q"]
    response = client.delete(f"/v1/datasets/{ids[0]}")
    assert response.status_code == 204 and response.content == b""
    error(client.get(f"/v1/datasets/{ids[0]}"), 404, "not_found")
    error(client.delete(f"/v1/datasets/{ids[0]}"), 404, "not_found")
    assert not (datasets_dir() / ids[0]).exists()


def test_jobs_name_an_uploaded_dataset(client: TestClient) -> None:
    data = csv_bytes({"a": [1, 2, 3, 4], "b": [0, 1, 0, 1], "y": ["u", "v", "u", "v"]})
    dataset = created(upload(client, data, "csv", target="y"))
    spec = {**seed_spec("on-upload"), "dataset": {"id": dataset["id"]}}
    assert client.post("/v1/jobs", params={"dry_run": "true"}, json=spec).status_code == 200
    with session_scope() as session:
        info = dataset_info(session, DatasetRef(id=dataset["id"]))
    assert info == DatasetInfo(DataKind.tabular, Task.classification, [2], ["u", "v"])
    unknown = {**spec, "dataset": {"id": "no-such-dataset"}}
    body = error(client.post("/v1/jobs", json=unknown), 422)
    assert body["message"] == "dataset.id: no dataset with id 'no-such-dataset'"

    job = client.post("/v1/jobs", json=spec).json()
    body = error(client.delete(f"/v1/datasets/{dataset['id']}"), 409, "dataset_in_use")
    assert [(d["field"], d["jobs"]) for d in body["details"]] == [(None, [job["id"]])]
    assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 202
    assert client.delete(f"/v1/datasets/{dataset['id']}").status_code == 204


def test_dataset_info_for_images_and_text(client: TestClient) -> None:
    image = created(upload(client, zip_bytes(class_images()), "images-zip", image_size=8))
    text = created(upload(client, b"text,label\nhi,a\nyo,b\n", "text-csv"))
    with session_scope() as session:
        assert dataset_info(session, DatasetRef(id=image["id"])) == DatasetInfo(
            DataKind.image, Task.classification, [3, 8, 8], ["cats", "dogs"]
        )
        assert dataset_info(session, DatasetRef(id=text["id"])).input_shape == []


def test_uploads_need_the_jobs_write_scope(client: TestClient) -> None:
    with session_scope() as session:
        _, key = create_key(session, "reader", ["jobs:read"])
    headers = {"Authorization": f"Bearer {key}"}
    response = client.post(
        "/v1/datasets",
        files={"file": ("a.csv", b"a,y\n1,2\n")},
        data={"name": unique_name("x"), "format": "csv", "target": "y"},
        headers=headers,
    )
    error(response, 403, "insufficient_scope")
    assert client.get("/v1/datasets", headers=headers).status_code == 200
    error(client.post("/v1/datasets", headers={"Authorization": ""}), 401)


def test_the_loader_refuses_a_missing_or_damaged_file(client: TestClient) -> None:
    body = created(upload(client, b"a,y\n1,p\n2,q\n", "csv", target="y"))
    path = datasets_dir() / body["id"] / "data.npz"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(StoredDatasetError, match="does not match its recorded sha256"):
        load_stored(get_settings(), body["id"])
    path.unlink()
    with pytest.raises(StoredDatasetError, match="is missing"):
        load_stored(get_settings(), body["id"])
    with pytest.raises(StoredDatasetError, match="does not exist"):
        load_stored(get_settings(), "no-such-dataset")


def test_the_transaction_decides_whether_files_stay(configured: dict[str, str]) -> None:
    """A rolled-back upload leaves no files; a rolled-back delete keeps them."""
    settings, principal = get_settings(), Principal("tester", "default", frozenset({"admin"}))
    options = UploadOptions(target="y")
    before = stored()
    with pytest.raises(RuntimeError), session_scope() as session:
        row = create_dataset(
            session, settings, principal, "x", DatasetFormat.csv, io.BytesIO(CSV), options
        )
        assert (datasets_dir() / row.id / "data.npz").exists()
        raise RuntimeError("the request failed after the upload")
    assert stored() == before

    with session_scope() as session:
        row = create_dataset(
            session, settings, principal, "x", DatasetFormat.csv, io.BytesIO(CSV), options
        )
    with pytest.raises(RuntimeError), session_scope() as session:
        delete_dataset(session, settings, row.id)
        raise RuntimeError("the request failed after the delete")
    assert (datasets_dir() / row.id / "data.npz").exists()
    with session_scope() as session:
        delete_dataset(session, settings, row.id)
    assert stored() == before


def test_a_name_is_one_dataset_per_project(client: TestClient) -> None:
    """A second upload of a name is a 409 naming the dataset that has it; eight uploads of
    one new name at once register it once and the losers keep no folder; the name is free
    again after a delete, and another project has names of its own."""
    name = unique_name("houses")
    first = created(upload(client, CSV, "csv", name, target="y"))
    taken = error(upload(client, CSV, "csv", name, target="y"), 409, "dataset_exists")
    assert [(d["field"], d["type"], d["id"]) for d in taken["details"]] == [
        ("name", "dataset_exists", first["id"])
    ]
    assert name in taken["message"]

    raced = unique_name("raced")
    before = set(datasets_dir().iterdir())
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: upload(client, CSV, "csv", raced, target="y"), range(8)))
    assert sorted(r.status_code for r in answers) == [201] + [409] * 7, [r.text for r in answers]
    winner = next(r.json()["id"] for r in answers if r.status_code == 201)
    assert set(datasets_dir().iterdir()) - before == {datasets_dir() / winner}

    assert client.delete(f"/v1/datasets/{first['id']}").status_code == 204
    again = created(upload(client, CSV, "csv", name, target="y"))
    assert again["id"] != first["id"]
    key = client.post(
        "/v1/keys",
        json={"scopes": ["jobs:write", "jobs:read"], "project": unique_name("elsewhere")},
    )
    elsewhere = {"Authorization": f"Bearer {key.json()['key']}"}
    theirs = client.post(
        "/v1/datasets",
        files={"file": ("a.csv", CSV)},
        data={"name": name, "format": "csv", "target": "y"},
        headers=elsewhere,
    )
    assert theirs.status_code == 201, theirs.text
    names = [d["name"] for d in client.get("/v1/datasets", headers=elsewhere).json()["items"]]
    assert names == [name]
