"""GET /v1/models/{name}/versions/{v}/artifact through the real stack: versions trained by a
real worker, exported, and run elsewhere (onnxruntime, transformers) to the answers predict
gives; the checkpoint itself, checked against the registry; and every way of asking for what
is not there or not yours."""

import hashlib
import io
import json
import tarfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient
from transformers import AutoTokenizer

from app.core.config import get_settings
from app.core.db import session_scope
from app.ml import export
from tests.dataset_files import csv_bytes, npz_bytes
from tests.hf_models import tiny_bert
from tests.integration.test_pretrained_jobs import finetune_spec, folder_zip, upload_base
from tests.integration.test_tenancy import key
from tests.integration.test_training_jobs import job_spec, train, upload
from tests.support import Proc, api_error, fixed_model, version_query

pytestmark = pytest.mark.usefixtures("worker")
ATOL = 1e-4
# Words of the tiny BERT's vocabulary (tests/hf_models.py), of different lengths: padding.
TEXTS = ["the film was good", "bad plot", "a great movie , the plot was awful", "good"]


def fetch(api: TestClient, name: str, fmt: str | None = None, **kwargs: Any) -> Any:
    params = {} if fmt is None else {"format": fmt}
    return api.get(f"/v1/models/{name}/versions/1/artifact", params=params, **kwargs)


def predict(api: TestClient, name: str, inputs: list[Any]) -> dict[str, Any]:
    response = api.post(f"/v1/models/{name}/predict", json={"inputs": inputs})
    assert response.status_code == 200, response.text
    return dict(response.json())


def onnx_model(api: TestClient, name: str) -> ort.InferenceSession:
    response = fetch(api, name, "onnx")
    assert response.status_code == 200, response.text
    disposition = f'attachment; filename="{name}-v1.onnx"'
    assert response.headers["content-disposition"] == disposition
    return ort.InferenceSession(response.content, providers=["CPUExecutionProvider"])


def checkpoint_of(name: str) -> Path:
    with session_scope() as session:
        row = session.scalars(version_query(name)).one()
        return get_settings().artifacts_dir / row.checkpoint_path


@pytest.fixture(scope="module")
def csv_mlp(api: TestClient, worker: Proc) -> str:
    rng = np.random.default_rng(0)
    size, color = rng.normal(size=80), rng.choice(["red", "blue"], 80)
    label = np.where(size + (color == "red") * 1.5 > 0.7, "big", "small")
    data = csv_bytes({"size": size, "color": color, "label": label})
    dataset = upload(api, data, "csv", target="label")
    train(api, job_spec("export-csv", dataset, {"arch": "mlp", "hidden": [8]}, epochs=3), worker)
    return "export-csv"


@pytest.fixture(scope="module")
def bert(api: TestClient, worker: Proc, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT base, LoRA-tuned hard enough (lr 1e-2) that its weights moved visibly."""
    base = tiny_bert(tmp_path_factory.mktemp("bert") / "tiny")
    assert upload_base(api, folder_zip(base), "export-bert").status_code == 201
    data = csv_bytes({"text": TEXTS[:2] * 16, "label": ["pos", "neg"] * 16})
    spec = finetune_spec("export-bert", upload(api, data, "text-csv"), "export-bert")
    spec["model"].update(finetune="lora", max_len=12)
    spec["training"].update(epochs=3, optimizer={"name": "adamw", "lr": 1e-2})
    train(api, spec, worker)
    return base


def test_the_checkpoint_is_sent_as_stored(api: TestClient, csv_mlp: str) -> None:
    sha = api.get(f"/v1/models/{csv_mlp}/versions/1").json()["checkpoint_sha256"]
    response = fetch(api, csv_mlp)
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == f'"{sha}"'
    disposition = f'attachment; filename="{csv_mlp}-v1.safetensors"'
    assert response.headers["content-disposition"] == disposition
    assert hashlib.sha256(response.content).hexdigest() == sha
    assert response.content == checkpoint_of(csv_mlp).read_bytes()
    assert fetch(api, csv_mlp, "safetensors").content == response.content


def test_onnx_of_a_csv_mlp_answers_what_predict_answers(api: TestClient, csv_mlp: str) -> None:
    rows = [[3.0, 0, 1], [-3.0, 1, 0], [0.2, 0.5, 0.5], [1.0, 1, 0]]
    model = onnx_model(api, csv_mlp)
    (probs,) = model.run(None, {"input": np.array(rows, np.float32)})
    np.testing.assert_allclose(probs, predict(api, csv_mlp, rows)["probabilities"], atol=ATOL)
    (one,) = model.run(None, {"input": np.array(rows[:1], np.float32)})  # the batch is dynamic
    np.testing.assert_allclose(one, probs[:1], atol=ATOL)
    meta = model.get_modelmeta().custom_metadata_map
    assert json.loads(meta["trainserve.classes"]) == ["big", "small"]
    assert len(json.loads(meta["trainserve.feature_names"])) == 3
    assert (meta["trainserve.input_kind"], meta["trainserve.version"]) == ("tabular", "1")
    assert [o.name for o in model.get_outputs()] == ["probabilities"]


def test_onnx_of_a_cnn_takes_uint8_pixels(api: TestClient, worker: Proc) -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 48)
    x = rng.integers(0, 50, (48, 1, 8, 8)).astype(np.uint8)
    x[y == 1, :, 2:6, 2:6] = 240
    dataset = upload(api, npz_bytes(X=x, y=y), "npz")
    train(api, job_spec("export-cnn", dataset, {"arch": "cnn", "channels": [4]}, epochs=2), worker)
    model = onnx_model(api, "export-cnn")
    (probs,) = model.run(None, {"input": x[:5]})  # (N, C, H, W) uint8, as stored
    expected = predict(api, "export-cnn", x[:5].reshape(5, -1).tolist())["probabilities"]
    np.testing.assert_allclose(probs, expected, atol=ATOL)
    assert model.get_modelmeta().custom_metadata_map["trainserve.input_kind"] == "image"


def test_onnx_of_a_finetuned_bert_takes_ids_and_mask(api: TestClient, bert: Path) -> None:
    model = onnx_model(api, "export-bert")
    tokenizer = AutoTokenizer.from_pretrained(bert)
    enc = tokenizer(TEXTS, padding=True, truncation=True, max_length=12, return_tensors="np")
    x = np.stack([enc["input_ids"], enc["attention_mask"]], axis=1).astype(np.int64)  # (N, 2, T)
    (probs,) = model.run(None, {"input": x})
    np.testing.assert_allclose(
        probs, predict(api, "export-bert", TEXTS)["probabilities"], atol=ATOL
    )
    meta = model.get_modelmeta().custom_metadata_map
    assert meta["trainserve.input_kind"] == "base-text"
    assert json.loads(meta["trainserve.base"])["name"] == "export-bert"


def test_hf_export_loads_with_transformers_as_its_readme_says(
    api: TestClient, bert: Path, tmp_path: Path
) -> None:
    response = fetch(api, "export-bert", "hf")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(response.content)) as archive:
        assert all(n.startswith("export-bert-v1/") for n in archive.getnames())
        archive.extractall(tmp_path, filter="data")
    folder = tmp_path / "export-bert-v1"
    files = {p.name for p in folder.iterdir()}
    weights = {"config.json", "model.safetensors", "head.safetensors"}
    tokenizer = {"vocab.txt", "tokenizer.json", "tokenizer_config.json"}
    assert weights | tokenizer | {"trainserve.json", "README.md"} <= files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pkl", ".py"))]
    assert json.loads((folder / "config.json").read_text())["id2label"] == {"0": "neg", "1": "pos"}
    about = json.loads((folder / "trainserve.json").read_text())
    assert (about["pooling"], about["classes"], about["max_len"]) == ("mean", ["neg", "pos"], 12)

    readme = (folder / "README.md").read_text()
    code = readme.split("```python\n")[1].split("```")[0]
    expected = predict(api, "export-bert", TEXTS)["probabilities"]
    scope: dict[str, Any] = {"folder": str(folder), "texts": TEXTS}
    exec(code, scope)  # the README's own recipe
    np.testing.assert_allclose(scope["probs"].numpy(), expected, atol=ATOL)
    # The fine-tuning is in the weights: the base's own backbone with this head answers else.
    untuned = {"folder": str(_with_head_of(folder, bert, tmp_path / "base")), "texts": TEXTS}
    exec(code, untuned)
    assert np.abs(untuned["probs"].numpy() - np.array(expected)).max() > 1e-3


def _with_head_of(export_folder: Path, base: Path, out: Path) -> Path:
    out.mkdir()
    for path in base.iterdir():
        (out / path.name).write_bytes(path.read_bytes())
    for name in ("head.safetensors", "trainserve.json"):
        (out / name).write_bytes((export_folder / name).read_bytes())
    return out


def test_formats_that_do_not_exist_or_do_not_fit_are_422(api: TestClient, csv_mlp: str) -> None:
    for fmt in ("../../etc/passwd", "pickle", "ONNX", "onnx/../safetensors", "", "hf\x00"):
        error = api_error(fetch(api, csv_mlp, fmt), 422, "validation_error")
        assert error["message"].startswith("format:"), error
    error = api_error(fetch(api, csv_mlp, "hf"), 422)
    assert "safetensors, onnx" in error["message"] and error["details"][0]["formats"] == [
        "safetensors",
        "onnx",
    ]
    for path in ("..%2F..%2Fetc/versions/1", "export-csv/versions/latest", "export-csv/versions/0"):
        response = api.get(f"/v1/models/{path}/artifact")
        assert response.status_code in (404, 422), (path, response.text)


def test_another_projects_key_or_a_deleted_version_is_404(api: TestClient, csv_mlp: str) -> None:
    other = key(api, "export-others")
    for fmt in ("safetensors", "onnx", "hf"):
        api_error(fetch(api, csv_mlp, fmt, headers=other), 404, "not_found")
    reader = key(api, "default", scopes=["predict"])
    api_error(fetch(api, csv_mlp, headers=reader), 403)
    fixed_model("export-deleted", get_settings().data_dir)
    assert fetch(api, "export-deleted").status_code == 200
    assert api.delete("/v1/models/export-deleted/versions/1").status_code == 204
    for fmt in ("safetensors", "onnx"):
        api_error(fetch(api, "export-deleted", fmt), 404, "not_found")


def test_a_missing_or_altered_checkpoint_is_409_even_once_exported(api: TestClient) -> None:
    for name in ("export-altered", "export-missing"):
        fixed_model(name, get_settings().data_dir)
    assert fetch(api, "export-altered", "onnx").status_code == 200  # built and kept
    path = checkpoint_of("export-altered")
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    checkpoint_of("export-missing").unlink()
    for name in ("export-altered", "export-missing"):
        for fmt in ("safetensors", "onnx"):
            api_error(fetch(api, name, fmt), 409, "model_unavailable")


def test_versions_of_the_same_weights_each_get_an_export_naming_themselves(
    api: TestClient,
) -> None:
    """Exports are kept per version: one built for a version with the same checkpoint bytes
    (a re-run, a copy) is not served for another, whose name and version it would carry."""
    for name in ("export-twin-a", "export-twin-b"):
        fixed_model(name, get_settings().data_dir)
    with session_scope() as session:  # b: a copy of a's checkpoint, as a re-run can make
        a = session.scalars(version_query("export-twin-a")).one()
        b = session.scalars(version_query("export-twin-b")).one()
        b.checkpoint_path, b.checkpoint_sha256 = a.checkpoint_path, a.checkpoint_sha256
    for name in ("export-twin-a", "export-twin-b"):
        meta = onnx_model(api, name).get_modelmeta().custom_metadata_map
        assert meta["trainserve.model_name"] == name, meta


def test_a_failed_build_leaves_nothing_that_is_served_later(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixed_model("export-full-disk", get_settings().data_dir)

    def half_then_full(bundle: Any, about: Any, dest: Path) -> None:
        dest.write_bytes(b"half an onnx file")
        raise OSError(28, "No space left on device", str(dest))

    real = export.write_onnx
    monkeypatch.setattr(export, "write_onnx", half_then_full)
    api_error(fetch(api, "export-full-disk", "onnx"), 507, "storage_full")
    with session_scope() as session:
        version_id = session.scalars(version_query("export-full-disk")).one().id
    built = get_settings().data_dir / "exports" / version_id
    assert not built.exists() or list(built.iterdir()) == []
    monkeypatch.setattr(export, "write_onnx", real)
    response = fetch(api, "export-full-disk", "onnx")
    assert response.status_code == 200 and ort.InferenceSession(response.content)


def test_concurrent_first_requests_build_once(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixed_model("export-race", get_settings().data_dir)
    builds, real = [], export.write_onnx

    def counted(bundle: Any, about: Any, dest: Path) -> None:
        builds.append(threading.get_ident())
        real(bundle, about, dest)

    monkeypatch.setattr(export, "write_onnx", counted)
    start = threading.Barrier(8)

    def ask(_: int) -> tuple[int, bytes, str]:
        start.wait()
        response = fetch(api, "export-race", "onnx")
        return response.status_code, response.content, response.headers["etag"]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(8)))
    assert len(builds) == 1
    assert {status for status, _, _ in answers} == {200}
    assert len({(content, etag) for _, content, etag in answers}) == 1
    assert answers[0][2].startswith('W/"')  # equivalent, not byte-equal, across processes
