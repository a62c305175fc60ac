"""Training that covers the field, through the real stack: uploads of every format trained by
a real worker process on PostgreSQL and Redis, then served by predict with the preprocessing
stored with the model (base64 images, raw strings)."""

import base64
import io
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from app.core.db import session_scope
from app.models import WorkerNode
from tests.dataset_files import csv_bytes, npz_bytes, zip_bytes
from tests.support import Proc, seed_spec, unique_name, wait_until

pytestmark = pytest.mark.usefixtures("worker")
ADAM = {"name": "adam", "lr": 0.01}


def upload(api: TestClient, data: bytes, fmt: str, **form: Any) -> str:
    fields = {
        "name": unique_name(f"{fmt}-data"),
        "format": fmt,
        **{k: str(v) for k, v in form.items()},
    }
    response = api.post("/v1/datasets", files={"file": ("data", data)}, data=fields)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def train(
    api: TestClient, spec: dict[str, Any], worker: Proc, timeout: float = 180
) -> dict[str, Any]:
    response = api.post("/v1/jobs", json=spec)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    done = wait_until(
        lambda: (
            (j := api.get(f"/v1/jobs/{job_id}").json())["status"]
            in {"succeeded", "failed", "cancelled"}
            and j
        ),
        timeout,
        f"job {job_id}",
    )
    assert done["status"] == "succeeded", (done, worker.output()[-3000:])
    return dict(done)


def job_spec(name: str, dataset_id: str, model: dict[str, Any], **training: Any) -> dict[str, Any]:
    return {
        "model_name": name,
        "dataset": {"id": dataset_id},
        "model": model,
        "training": {"optimizer": ADAM, "validation_split": 0.25, **training},
    }


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def bars(n: int, rng: np.random.Generator) -> tuple[list[bytes], list[str]]:
    """RGB images of different sizes with a bright horizontal or vertical bar."""
    images, labels = [], []
    for i in range(n):
        h, w = int(rng.integers(14, 24)), int(rng.integers(14, 24))
        pixels = rng.integers(0, 60, (h, w, 3)).astype(np.uint8)
        if i % 2:
            pixels[:, int(rng.integers(3, w - 3)), :] = 250
        else:
            pixels[int(rng.integers(3, h - 3)), :, :] = 250
        images.append(png(pixels))
        labels.append("vertical" if i % 2 else "horizontal")
    return images, labels


def test_csv_with_string_labels_and_categories(api: TestClient, worker: Proc) -> None:
    rng = np.random.default_rng(0)
    size = rng.normal(size=200)
    color = rng.choice(["red", "blue"], 200)
    label = np.where(size + (color == "red") * 1.5 > 0.7, "big", "small")
    dataset = upload(
        api, csv_bytes({"size": size, "color": color, "label": label}), "csv", target="label"
    )
    job = train(
        api, job_spec("csv-mlp", dataset, {"arch": "mlp", "hidden": [16]}, epochs=30), worker
    )
    assert job["metrics"]["val_accuracy"] >= 0.85
    version = api.get("/v1/models/csv-mlp/versions/1").json()
    assert version["classes"] == ["big", "small"] and version["input_shape"] == [3]
    body = api.post(
        "/v1/models/csv-mlp/predict", json={"inputs": [[3.0, 0, 1], [-3.0, 1, 0]]}
    ).json()
    assert body["predictions"] == ["big", "small"]
    records = [{"size": 3.0, "color": "red"}, {"color": "blue", "size": -3.0}]
    by_name = api.post("/v1/models/csv-mlp/predict", json={"inputs": records}).json()
    assert (
        by_name["predictions"] == ["big", "small"]
        and by_name["probabilities"] == body["probabilities"]
    )
    for record, needle in [
        ({"size": 1.0}, "missing features: color=blue"),
        ({"size": 1.0, "color": "green"}, "'green' is not a category of 'color'"),
        ({"size": 1.0, "color": "red", "weight": 2}, "unknown feature 'weight'"),
        ([1.0, 0], "in this order: size, color=blue, color=red"),  # the one-hot order
        ([1.0, "red", 0], "feature 1 ('color=blue') must be a number, got str"),
    ]:
        response = api.post("/v1/models/csv-mlp/predict", json={"inputs": [record]})
        assert response.status_code == 422 and needle in response.json()["error"]["message"], (
            response.text
        )


def test_images_zip_trains_a_resnet_and_predicts_base64_images(
    api: TestClient, worker: Proc
) -> None:
    images, labels = bars(120, np.random.default_rng(1))
    entries = {
        f"{label}/{i}.png": data for i, (data, label) in enumerate(zip(images, labels, strict=True))
    }
    dataset = upload(api, zip_bytes(entries), "images-zip", image_size=16)
    model = {"arch": "resnet", "width": 8, "depth": 1}
    job = train(
        api,
        job_spec(
            "bars-resnet",
            dataset,
            model,
            epochs=12,
            batch_size=16,
            augment={"flip": False, "crop_padding": 1},
        ),
        worker,
    )
    assert job["metrics"]["val_accuracy"] >= 0.9, job["metrics"]
    assert job["report"]["validation"]["classes"] == ["horizontal", "vertical"]

    fresh, truth = bars(10, np.random.default_rng(2))
    inputs = [base64.b64encode(b).decode() for b in fresh]
    body = api.post("/v1/models/bars-resnet/predict", json={"inputs": inputs}).json()
    accuracy = np.mean([p == t for p, t in zip(body["predictions"], truth, strict=True)])
    assert accuracy >= 0.8, body["predictions"]
    data_url = "data:image/png;base64," + inputs[0]
    assert (
        api.post("/v1/models/bars-resnet/predict", json={"inputs": [data_url]}).status_code == 200
    )
    flat = [[0] * (3 * 16 * 16)]  # a flattened (C, H, W) image of 0..255 values
    assert api.post("/v1/models/bars-resnet/predict", json={"inputs": flat}).status_code == 200
    for bad, needle in [
        ("not base64!!", "base64"),
        (base64.b64encode(b"GIF89a...").decode(), "PNG or JPEG"),
        ([1, 2, 3], "expected 768"),
        ([[300] * 768][0], "0..255"),
    ]:
        response = api.post("/v1/models/bars-resnet/predict", json={"inputs": [bad]})
        assert response.status_code == 422 and needle in response.json()["error"]["message"], (
            response.text
        )


def test_npz_images_train_a_cnn_and_an_mlp_on_pixels(api: TestClient, worker: Proc) -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 160)
    x = rng.integers(0, 50, (160, 1, 10, 10)).astype(np.uint8)
    x[y == 1, :, 2:8, 2:8] = 240  # a bright square for class 1
    dataset = upload(api, npz_bytes(X=x, y=y), "npz")
    cnn = train(
        api, job_spec("npz-cnn", dataset, {"arch": "cnn", "channels": [8]}, epochs=10), worker
    )
    mlp = train(
        api, job_spec("npz-mlp", dataset, {"arch": "mlp", "hidden": [32]}, epochs=10), worker
    )
    assert cnn["metrics"]["val_accuracy"] >= 0.9 and mlp["metrics"]["val_accuracy"] >= 0.9
    flat = x[:4].reshape(4, -1).tolist()
    body = api.post("/v1/models/npz-mlp/predict", json={"inputs": flat}).json()
    assert body["predictions"] == y[:4].tolist()


@pytest.mark.parametrize("encoder", ["bag", "transformer"])
def test_text_csv_trains_and_predicts_strings(api: TestClient, worker: Proc, encoder: str) -> None:
    rng = np.random.default_rng(4)
    good, bad = ["great", "wonderful", "loved"], ["awful", "boring", "hated"]
    label = rng.choice(["pos", "neg"], 240)
    text = [f"the film was {rng.choice(good if v == 'pos' else bad)} and long" for v in label]
    dataset = upload(api, csv_bytes({"text": text, "label": label}), "text-csv")
    model = {
        "arch": "text",
        "encoder": encoder,
        "embed_dim": 32,
        "max_len": 12,
        "heads": 2,
        "layers": 1,
    }
    name = f"text-{encoder}"
    job = train(api, job_spec(name, dataset, model, epochs=12, batch_size=32), worker)
    assert job["metrics"]["val_accuracy"] >= 0.9
    body = api.post(
        f"/v1/models/{name}/predict", json={"inputs": ["I loved it", "so boring"]}
    ).json()
    assert body["predictions"] == ["pos", "neg"]
    response = api.post(f"/v1/models/{name}/predict", json={"inputs": [[1, 2, 3]]})
    assert response.status_code == 422 and "strings" in response.json()["error"]["message"]


def test_two_identical_jobs_give_identical_metrics(api: TestClient, worker: Proc) -> None:
    spec = seed_spec("twin", epochs=4)
    first, second = train(api, spec, worker), train(api, {**spec, "model_name": "twin-2"}, worker)
    assert first["metrics"] == second["metrics"]
    a = api.get(f"/v1/jobs/{first['id']}/metrics").json()
    b = api.get(f"/v1/jobs/{second['id']}/metrics").json()
    assert [(m["name"], m["value"]) for m in a] == [(m["name"], m["value"]) for m in b]


def test_early_stopping_registers_the_best_epoch(api: TestClient, worker: Proc) -> None:
    rng = np.random.default_rng(5)  # labels are noise: the model can only overfit
    dataset = upload(
        api,
        npz_bytes(X=rng.normal(size=(120, 30)).astype(np.float32), y=rng.integers(0, 2, 120)),
        "npz",
    )
    spec = job_spec(
        "overfit",
        dataset,
        {"arch": "mlp", "hidden": [256]},
        epochs=300,
        early_stopping={"metric": "val_loss", "patience": 3},
    )
    job = train(api, spec, worker)
    best, last = job["report"]["best_epoch"], job["report"]["last_epoch"]
    assert last < 300 and best == last - 3
    assert f"best epoch {best} of {last}" in job["status_message"]
    history = api.get(f"/v1/jobs/{job['id']}/metrics").json()
    losses = {m["epoch"]: m["value"] for m in history if m["name"] == "val_loss"}
    assert min(losses, key=losses.__getitem__) == best
    version = api.get("/v1/models/overfit/versions/1").json()
    assert (
        version["metrics"]["val_loss"] == losses[best]
    )  # the registered model is the best epoch's
    assert version["metrics"]["report"]["best_epoch"] == best


def test_test_split_metrics_and_confusion_matrix_are_visible(api: TestClient, worker: Proc) -> None:
    spec = seed_spec(
        "with-test", epochs=5, test_split=0.2, schedule={"name": "cosine", "warmup_epochs": 1}
    )
    job = train(api, spec, worker)
    assert job["metrics"]["test_accuracy"] > 0.8
    assert {"test_f1_macro", "test_recall_macro", "test_precision_macro", "val_f1[3]"} <= set(
        job["metrics"]
    )
    confusion = job["report"]["test"]["confusion_matrix"]
    assert len(confusion) == 10 and sum(map(sum, confusion)) == 360


def test_the_worker_advertises_its_devices_and_cuda_jobs_are_refused_without_one(
    api: TestClient,
) -> None:
    def rows() -> list[WorkerNode]:
        with session_scope() as session:
            return list(session.scalars(select(WorkerNode)))

    nodes = wait_until(rows, 30, "the worker's row")
    assert all(n.cuda_devices == 0 for n in nodes)
    response = api.post("/v1/jobs", json=seed_spec("on-gpu", device="cuda"))
    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith(
        "training.device: no running worker has a CUDA GPU"
    )
