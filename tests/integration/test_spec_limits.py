"""A job spec small on the wire but huge in memory is refused at submission: the model's
parameters and a training step's memory are estimated from the spec and the dataset's shape
against TRAINSERVE_MAX_MODEL_PARAMETERS and TRAINSERVE_MAX_TRAINING_BYTES, with a 422 naming
the field to make smaller. Each case here passed dry_run before, within every other limit."""

import resource
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings, get_settings
from app.main import create_app
from tests.dataset_files import class_images, zip_bytes
from tests.support import seed_spec, unique_name


@pytest.fixture(scope="module")
def image_dataset(api: TestClient) -> str:
    """A 3x64x64 images-zip dataset."""
    response = api.post(
        "/v1/datasets",
        files={"file": ("shapes.zip", zip_bytes(class_images()))},
        data={"name": unique_name("limits-images"), "format": "images-zip", "image_size": "64"},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.fixture(scope="module")
def text_dataset(api: TestClient) -> str:
    data = b"text,label\n" + b"".join(
        b"word %d here,%s\n" % (i, b"ab"[i % 2 : i % 2 + 1]) for i in range(20)
    )
    response = api.post(
        "/v1/datasets",
        files={"file": ("texts.csv", data)},
        data={"name": unique_name("limits-texts"), "format": "text-csv"},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def dry_run(client: TestClient, spec: dict[str, Any]) -> Any:
    return client.post("/v1/jobs", params={"dry_run": True}, json=spec)


def refused(response: Any, field: str, setting: str) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["message"].startswith(f"{field}: "), error
    assert f"TRAINSERVE_{setting.upper()}" in error["message"]
    (detail,) = error["details"]
    assert detail["field"] == field and detail["setting"] == setting
    assert detail["estimate"] > detail["limit"] == getattr(get_settings(), setting)
    return detail


def spec_on(dataset: str, model: dict[str, Any], **training: Any) -> dict[str, Any]:
    return {**seed_spec("huge"), "dataset": {"id": dataset}, "model": model, "training": training}


def test_16_hidden_layers_of_16384_units_are_refused_by_their_parameter_count(
    api: TestClient,
) -> None:
    spec = {**seed_spec("huge"), "model": {"arch": "mlp", "hidden": [16384] * 16}}
    detail = refused(dry_run(api, spec), "model.hidden", "max_model_parameters")
    assert detail["estimate"] == 64 * 16384 + 16384 + 15 * (16384 * 16384 + 16384) + 16384 * 10 + 10
    assert "4,028,006,410 parameters" in detail["message"]


def test_cnn_channels_have_an_upper_bound(api: TestClient, image_dataset: str) -> None:
    response = dry_run(api, spec_on(image_dataset, {"arch": "cnn", "channels": [32, 1_000_000]}))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["field"] == "model.channels.1"


def test_wide_cnn_channels_are_refused_by_the_memory_of_a_training_step(
    api: TestClient, image_dataset: str
) -> None:
    # [4096] * 6 at 64x64: 755 M parameters (fits), 0.2 GiB of activations per row
    model = {"arch": "cnn", "channels": [4096] * 6}
    detail = refused(
        dry_run(api, spec_on(image_dataset, model, batch_size=1024)),
        "training.batch_size",
        "max_training_bytes",
    )
    assert "at most" in detail["message"]
    fits = int(detail["message"].rsplit("at most ", 1)[1].split()[0].replace(",", ""))
    assert dry_run(api, spec_on(image_dataset, model, batch_size=fits)).status_code == 200
    over = dry_run(api, spec_on(image_dataset, model, batch_size=fits + 1))
    refused(over, "training.batch_size", "max_training_bytes")


@pytest.mark.parametrize("encoder", ["transformer", "bag"])
def test_text_max_len_2048_with_batch_65536_is_refused_naming_the_batch_size(
    api: TestClient, text_dataset: str, encoder: str
) -> None:
    model = {"arch": "text", "encoder": encoder, "max_len": 2048}
    response = dry_run(api, spec_on(text_dataset, model, batch_size=65536))
    detail = refused(response, "training.batch_size", "max_training_bytes")
    assert "of activations per row" in detail["message"]


def test_a_model_whose_weights_alone_exceed_the_memory_limit_names_its_size_field(
    api: TestClient,
) -> None:
    settings = Settings(max_training_bytes=1024**3)
    app = create_app(settings)
    app.dependency_overrides[get_settings] = lambda: settings
    with TestClient(app) as small:
        small.headers.update(api.headers)
        # 4 x 4096 units: 50 M parameters, 0.6 GiB as weights + gradients + momentum
        spec = {**seed_spec("wide"), "model": {"arch": "mlp", "hidden": [4096] * 4}}
        assert dry_run(small, spec).status_code == 200
        # 4 x 8192 units: 200 M parameters, 2.3 GiB before a single activation
        response = dry_run(small, {**spec, "model": {"arch": "mlp", "hidden": [8192] * 4}})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["message"].startswith("model.hidden: a training step needs about")
    assert "1.0 GiB allowed (TRAINSERVE_MAX_TRAINING_BYTES)" in error["message"]


def test_the_seed_spec_and_everyday_image_models_pass(api: TestClient, image_dataset: str) -> None:
    assert dry_run(api, seed_spec("seed")).status_code == 200
    for model in ({"arch": "cnn"}, {"arch": "resnet", "width": 64, "depth": 8}):
        response = dry_run(api, spec_on(image_dataset, model, batch_size=128))
        assert response.status_code == 200, response.text


def test_refusing_a_huge_spec_takes_milliseconds_and_no_memory(
    api: TestClient, text_dataset: str
) -> None:
    specs = [
        {**seed_spec("huge"), "model": {"arch": "mlp", "hidden": [16384] * 16}},
        spec_on(
            text_dataset,
            {"arch": "text", "encoder": "transformer", "max_len": 2048},
            batch_size=65536,
        ),
    ]
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    began = time.perf_counter()
    for spec in specs * 10:
        assert dry_run(api, spec).status_code == 422
    per_request = (time.perf_counter() - began) / 20
    assert per_request < 0.25, per_request  # the whole request, database lookups included
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 20 * 1024
