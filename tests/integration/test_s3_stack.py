"""The service on an S3 store (moto's server, a real S3 endpoint): a dataset, a job's
checkpoints and its model go to the bucket, predict and downloads load from it, and an
object altered in the bucket is refused with a clear error, by a job and by a download."""

import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from tests.dataset_files import csv_bytes
from tests.s3_support import moto_server, use_aws
from tests.support import Served, api_and_worker, seed_spec, unique_name, wait_until

BUCKET = "trainserve-stack"
PREFIX = "deploy"
KEY = f"ts_{secrets.token_urlsafe(24)}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Any]]:
    workdir = tmp_path_factory.mktemp("s3-stack")
    with moto_server(workdir) as url, pytest.MonkeyPatch.context() as mp:
        use_aws(mp, workdir, url)
        bucket = boto3.client("s3", endpoint_url=url)
        bucket.create_bucket(Bucket=BUCKET)
        store = f"s3://{BUCKET}/{PREFIX}"
        with api_and_worker(workdir, KEY, artifact_store=store, lease_s="60") as served:
            yield served, bucket


@pytest.fixture(scope="module")
def http(stack: tuple[Served, Any]) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=stack[0].url, headers=headers, timeout=30) as client:
        yield client


def objects(bucket: Any, under: str) -> list[str]:
    answer = bucket.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/{under}")
    return sorted(item["Key"].removeprefix(f"{PREFIX}/") for item in answer.get("Contents", []))


def upload(http: httpx.Client) -> dict[str, Any]:
    rows = 120
    data = csv_bytes(
        {
            "a": [i % 7 for i in range(rows)],
            "b": [i % 5 for i in range(rows)],
            "y": ["p" if (i % 7) > 3 else "q" for i in range(rows)],
        }
    )
    response = http.post(
        "/v1/datasets",
        files={"file": ("d.csv", data)},
        data={"name": unique_name("s3"), "format": "csv", "target": "y"},
    )
    assert response.status_code == 201, response.text
    return response.json()


def run_job(http: httpx.Client, dataset_id: str, name: str) -> dict[str, Any]:
    spec = seed_spec(name, epochs=2)
    spec["dataset"] = {"id": dataset_id}
    spec["model"]["hidden"] = [8]
    response = http.post("/v1/jobs", json=spec)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]

    def finished() -> dict[str, Any] | None:
        job = http.get(f"/v1/jobs/{job_id}").json()
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    done: dict[str, Any] = wait_until(finished, 120, f"job {job_id}", interval=0.5)
    return done


def clear_read_cache(served: Served) -> None:
    """This host forgets what it downloaded: the next read asks the bucket."""
    shutil.rmtree(Path(served.env["TRAINSERVE_DATA_DIR"]) / "artifact-cache" / "objects")


@pytest.fixture(scope="module")
def trained(http: httpx.Client) -> tuple[dict[str, Any], dict[str, Any], str]:
    """A dataset uploaded and a job trained on it: (dataset, job, model name)."""
    dataset, name = upload(http), unique_name("s3-model")
    job = run_job(http, dataset["id"], name)
    assert job["status"] == "succeeded", job
    return dataset, job, name


def test_a_dataset_a_job_and_predict_go_through_the_bucket(
    stack: tuple[Served, Any],
    http: httpx.Client,
    trained: tuple[dict[str, Any], dict[str, Any], str],
) -> None:
    (served, bucket), (dataset, job, name) = stack, trained
    ready = httpx.get(f"{served.url}/readyz").json()
    assert ready["checks"]["artifact_store"] == "ok", ready
    assert objects(bucket, f"datasets/{dataset['id']}") == [f"datasets/{dataset['id']}/data.npz"]
    assert objects(bucket, f"jobs/{job['id']}") == [
        f"jobs/{job['id']}/attempt-1/{file}"
        for file in ("epoch-0001.safetensors", "epoch-0002.safetensors", "model.safetensors")
    ]
    # nothing of it on this host's own disk: the store is the bucket
    local = Path(served.env["TRAINSERVE_DATA_DIR"]) / "artifacts"
    assert [p for p in local.rglob("*") if p.is_file()] == []
    clear_read_cache(served)
    answer = http.post(f"/v1/models/{name}/predict", json={"inputs": [[1, 2]]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"][0] in ("p", "q")


def test_an_object_altered_in_the_bucket_is_refused_clearly(
    stack: tuple[Served, Any],
    http: httpx.Client,
    trained: tuple[dict[str, Any], dict[str, Any], str],
) -> None:
    (served, bucket), (dataset, job, name) = stack, trained
    model_key = f"{PREFIX}/jobs/{job['id']}/attempt-1/model.safetensors"
    for key in (model_key, f"{PREFIX}/datasets/{dataset['id']}/data.npz"):
        body = bucket.get_object(Bucket=BUCKET, Key=key)
        altered = bytearray(body["Body"].read())
        altered[len(altered) // 2] ^= 0xFF
        bucket.put_object(Bucket=BUCKET, Key=key, Body=bytes(altered), Metadata=body["Metadata"])
    clear_read_cache(served)
    download = http.get(f"/v1/models/{name}/versions/1/artifact")
    assert download.status_code == 409, download.text
    error = download.json()["error"]
    assert error["code"] == "model_unavailable"
    assert "is corrupt" in error["message"] and "model.safetensors" in error["message"]
    again = run_job(http, dataset["id"], unique_name("s3-refused"))
    assert again["status"] == "failed"
    assert "does not match its recorded sha256" in again["status_message"], again
