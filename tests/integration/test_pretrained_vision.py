"""Vision bases through the real stack: a tiny ViT uploaded as a base model zip, fine-tuned by a
real worker on an images-zip of red and blue squares, served from base64 PNGs and exported
(ONNX, a Hugging Face folder); a ResNet's head and a ViT's LoRA adapters; and the specs a
vision base refuses at submission."""

import base64
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.dataset_files import zip_bytes
from tests.hf_models import tiny_bert, tiny_resnet, tiny_vit
from tests.integration.test_pretrained_jobs import finetune_spec, folder_zip, sentiment, upload_base
from tests.integration.test_training_jobs import train, upload
from tests.support import Proc

pytestmark = pytest.mark.usefixtures("worker")
COLOURS = {"red": (200, 30, 30), "blue": (30, 30, 200)}


def square(colour: str, rng: np.random.Generator) -> bytes:
    """A PNG of a coloured square on a noisy grey background, of a random size and place."""
    side = int(rng.integers(18, 30))
    pixels = rng.integers(90, 160, (side, side, 3)).astype(np.uint8)
    edge = int(rng.integers(side // 2, side - 2))
    top, left = rng.integers(0, side - edge, 2)
    pixels[top : top + edge, left : left + edge] = COLOURS[colour]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def squares(n: int, seed: int) -> tuple[list[bytes], list[str]]:
    rng = np.random.default_rng(seed)
    labels = ["red" if i % 2 else "blue" for i in range(n)]
    return [square(label, rng) for label in labels], labels


@pytest.fixture(scope="module")
def bases(api: TestClient, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("vision-bases")
    made = {"vis-vit": tiny_vit, "vis-resnet": tiny_resnet, "vis-bert": tiny_bert}
    for name, make in made.items():
        response = upload_base(api, folder_zip(make(root / name)), name)
        assert response.status_code == 201, response.text
    return {name: name for name in made}


@pytest.fixture(scope="module")
def colours(api: TestClient) -> str:
    images, labels = squares(64, seed=0)
    entries = {
        f"{label}/{i}.png": data for i, (data, label) in enumerate(zip(images, labels, strict=True))
    }
    return upload(api, zip_bytes(entries), "images-zip", image_size=24)


def vision_spec(name: str, dataset: str, base: str, **model: Any) -> dict[str, Any]:
    """Flips: augmentation runs on pretrained vision as on a cnn."""
    spec = finetune_spec(name, dataset, base, **model)
    spec["model"].pop("max_len")
    spec["training"].update(epochs=6, batch_size=16, augment={"flip": True, "crop_padding": 1})
    return spec


def test_a_vit_finetunes_on_images_predicts_base64_pngs_and_exports(
    api: TestClient, worker: Proc, bases: dict[str, str], colours: str, tmp_path: Path
) -> None:
    job = train(api, vision_spec("vis-colours", colours, "vis-vit", finetune="full"), worker)
    assert job["metrics"]["val_accuracy"] >= 0.9, job["metrics"]
    version = api.get("/v1/models/vis-colours/versions/1").json()
    assert version["input_shape"] == [3, 24, 24] and version["classes"] == ["blue", "red"]

    fresh, truth = squares(10, seed=1)
    inputs = [base64.b64encode(b).decode() for b in fresh]
    response = api.post("/v1/models/vis-colours/predict", json={"inputs": inputs})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["predictions"] == truth, body
    flat = [[0] * (3 * 24 * 24)]  # a flattened (C, H, W) image of 0..255 values, as for a cnn
    assert api.post("/v1/models/vis-colours/predict", json={"inputs": flat}).status_code == 200

    exported = api.get("/v1/models/vis-colours/versions/1/artifact", params={"format": "onnx"})
    assert exported.status_code == 200, exported.text
    model = ort.InferenceSession(exported.content, providers=["CPUExecutionProvider"])
    pixels = np.stack([_pixels(b) for b in fresh])  # (N, 3, 24, 24) uint8, as predict decodes
    (probs,) = model.run(None, {"input": pixels})
    np.testing.assert_allclose(probs, body["probabilities"], atol=1e-4)
    _check_hf_export(api, fresh, body["probabilities"], tmp_path)


def _check_hf_export(
    api: TestClient, images: list[bytes], expected: list[list[float]], tmp_path: Path
) -> None:
    """The hf folder's README recipe, run on the image files, answers what predict did."""
    response = api.get("/v1/models/vis-colours/versions/1/artifact", params={"format": "hf"})
    assert response.status_code == 200, response.text
    with tarfile.open(fileobj=io.BytesIO(response.content)) as archive:
        archive.extractall(tmp_path, filter="data")
    folder = tmp_path / "vis-colours-v1"
    about = json.loads((folder / "trainserve.json").read_text())
    assert (about["pooling"], about["classes"]) == ("class-token", ["blue", "red"])
    paths = []
    for i, data in enumerate(images):
        paths.append(tmp_path / f"{i}.png")
        paths[-1].write_bytes(data)
    code = (folder / "README.md").read_text().split("```python\n")[1].split("```")[0]
    scope: dict[str, Any] = {"folder": str(folder), "paths": [str(p) for p in paths]}
    exec(code, scope)  # the README's own recipe
    np.testing.assert_allclose(scope["probs"].numpy(), expected, atol=1e-4)


def _pixels(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as img:
        resized = img.convert("RGB").resize((24, 24), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8).transpose(2, 0, 1)


def test_specs_that_do_not_fit_a_vision_base_are_refused(
    api: TestClient, bases: dict[str, str], colours: str
) -> None:
    text = upload(api, sentiment(16), "text-csv")
    cases = [
        (finetune_spec("v", text, "vis-vit"), "model.base", "takes image data"),
        (finetune_spec("v", colours, "vis-bert"), "model.base", "takes text data"),
        (vision_spec("v", colours, "vis-resnet", finetune="lora"), "model.finetune", "LoRA"),
        (vision_spec("v", colours, "vis-vit", head="causal-lm"), "model.head", "classification"),
    ]
    for spec, field, needle in cases:
        response = api.post("/v1/jobs", json=spec)
        assert response.status_code == 422, (spec, response.text)
        assert field in response.text and needle in response.text, response.text
    dry = api.post(
        "/v1/jobs?dry_run=true", json=vision_spec("v", colours, "vis-vit", finetune="lora")
    )
    assert dry.status_code == 200, dry.text  # a ViT takes LoRA adapters


def test_lora_and_head_modes_train_on_a_vit_and_a_resnet(
    api: TestClient, worker: Proc, bases: dict[str, str], colours: str
) -> None:
    fresh, truth = squares(6, seed=2)
    inputs = [base64.b64encode(b).decode() for b in fresh]
    # A head alone on a random ResNet's frozen features learns less than adapters in a ViT.
    for name, base, mode, least in (
        ("vis-lora", "vis-vit", "lora", 0.9),
        ("vis-head", "vis-resnet", "head", 0.75),
    ):
        spec = vision_spec(name, colours, base, finetune=mode)
        spec["training"]["optimizer"]["lr"] = 1e-2
        job = train(api, spec, worker)
        assert job["metrics"]["val_accuracy"] >= least, (name, job["metrics"])
        body = api.post(f"/v1/models/{name}/predict", json={"inputs": inputs}).json()
        assert len(body["predictions"]) == 6 and set(body["predictions"]) <= set(truth), body
        if mode == "lora":
            assert body["predictions"] == truth, body
