"""A GPT-style base fine-tuned to continue text, through the real stack: a corpus uploaded as
a `text` dataset, a causal-lm job trained by a real worker, and generate answering at once or
streaming its tokens as Server-Sent Events; with the limits a generator needs."""

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.hf_models import tiny_gpt2
from tests.integration.conftest import ADMIN_KEY
from tests.integration.test_pretrained_jobs import folder_zip, upload_base
from tests.integration.test_training_jobs import train
from tests.support import BIN, Proc, base_env, free_port, unique_name, wait_http_ok, wait_until

pytestmark = pytest.mark.usefixtures("worker")
CYCLE = ["red", "green", "blue"]


@pytest.fixture(scope="module")
def generator(api: TestClient, worker: Proc, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny GPT-2 fine-tuned on lines of red green blue, repeated: it learns the cycle."""
    base = upload_base(api, folder_zip(tiny_gpt2(tmp_path_factory.mktemp("gpt") / "g")), "gpt")
    assert base.status_code == 201, base.text
    assert base.json()["family"] == "text-decoder"
    lines = [" ".join(CYCLE[(i + j) % 3] for j in range(12)) for i in range(120)]
    corpus = "\n".join(json.dumps({"text": line}) for line in lines).encode()
    dataset = api.post(
        "/v1/datasets",
        files={"file": ("corpus.jsonl", corpus)},
        data={"name": unique_name("colours"), "format": "text"},
    )
    assert dataset.status_code == 201, dataset.text
    assert dataset.json()["task"] == "generation"
    spec = {
        "model_name": "colours",
        "dataset": {"id": dataset.json()["id"]},
        "model": {"arch": "pretrained", "base": "gpt", "head": "causal-lm", "max_len": 16},
        "training": {
            "epochs": 6,
            "batch_size": 8,
            # 5e-3 leaves the first plateau (every colour equally likely) within two epochs for
            # every seed tried; 1e-2 can sit on it for ten.
            "optimizer": {"name": "adamw", "lr": 0.005},
            "validation_split": 0.2,
        },
    }
    job = train(api, spec, worker)
    assert job["metrics"]["val_perplexity"] < 1.5, job["metrics"]
    return "colours"


def generate(api: TestClient, name: str, **body: Any) -> Any:
    return api.post(f"/v1/models/{name}/generate", json={"prompt": "red green", **body})


def test_it_continues_the_pattern_it_learned(api: TestClient, generator: str) -> None:
    response = generate(api, generator, max_new_tokens=6, temperature=0)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["text"].split() == ["blue", "red", "green", "blue", "red", "green"], body
    assert body["model_name"] == "colours" and body["model_version"] == 1
    assert (body["tokens"], body["prompt_tokens"], body["finish_reason"]) == (6, 2, "length")
    for version in (1, "1"):  # a number, or a string as in predict's paths
        pinned = generate(api, generator, max_new_tokens=2, temperature=0, version=version)
        assert pinned.status_code == 200 and pinned.json()["model_version"] == 1, pinned.text
    assert generate(api, generator, version=7).status_code == 404


def test_a_seed_gives_the_same_text_every_time(api: TestClient, generator: str) -> None:
    sampled = [
        generate(api, generator, max_new_tokens=12, temperature=1.5, top_p=1.0, seed=7).json()
        for _ in range(3)
    ]
    assert len({s["text"] for s in sampled}) == 1
    other = generate(api, generator, max_new_tokens=12, temperature=1.5, top_p=1.0, seed=8)
    assert other.status_code == 200


def test_stream_sends_each_token_then_the_totals(api: TestClient, generator: str) -> None:
    with api.stream(
        "POST",
        f"/v1/models/{generator}/generate",
        json={"prompt": "red green", "max_new_tokens": 4, "temperature": 0, "stream": True},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = "".join(response.iter_text())
    events = [block.split("\n", 1) for block in raw.strip().split("\n\n")]
    kinds = [head.removeprefix("event: ") for head, _ in events]
    assert kinds == ["token"] * 4 + ["done"], raw
    data = [json.loads(rest.removeprefix("data: ")) for _, rest in events]
    assert [d["index"] for d in data[:4]] == [0, 1, 2, 3]
    done = data[-1]
    assert done["text"] == "".join(d["text"] for d in data[:4]) and done["tokens"] == 4
    assert api.app.state.serving.generations.running == 0  # type: ignore[attr-defined]


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def test_a_client_that_hangs_up_stops_its_generation(
    configured: dict[str, str], generator: str, tmp_path: Path
) -> None:
    """Over a real socket: a stream of 1000 tokens whose client leaves after the first one
    stops well before its end, and gives its slot back."""
    port = free_port()
    env = base_env() | configured | {"TRAINSERVE_MAX_NEW_TOKENS": "1000"}
    proc = Proc([str(BIN), "api", "--port", str(port)], env, tmp_path / "api.log")
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    body = {"prompt": "red", "max_new_tokens": 1000, "min_new_tokens": 1000, "stream": True}
    try:
        wait_http_ok(f"{url}/readyz", proc)
        path = f"{url}/v1/models/{generator}/generate"
        with httpx.stream("POST", path, json=body, headers=headers, timeout=60) as streaming:
            assert streaming.status_code == 200
            next(streaming.iter_lines())
        wait_until(lambda: metric(url, "trainserve_generations_running") == 0, 20, "the slot back")
        made = metric(url, "trainserve_generated_tokens_total")
        assert 1 <= made < 1000, made
        time.sleep(0.5)
        assert metric(url, "trainserve_generated_tokens_total") == made  # and it stays stopped
    finally:
        proc.stop()


def test_past_the_concurrent_limit_a_generation_is_a_429(generator: str) -> None:
    from app.core.config import Settings
    from app.core.errors import TooManyRequests
    from app.serving.generation import Generations

    generations = Generations(Settings(max_concurrent_generations=2))
    first, second = generations.slot(), generations.slot()
    with pytest.raises(TooManyRequests, match="TRAINSERVE_MAX_CONCURRENT_GENERATIONS"):
        generations.slot()
    first.release()
    first.release()  # given back once, however many paths end it
    assert generations.running == 1
    generations.slot().release()
    second.release()
    assert generations.running == 0


def test_limits_and_wrong_models_are_refused(api: TestClient, generator: str) -> None:
    too_long = generate(api, generator, max_new_tokens=10_000)
    assert too_long.status_code == 422 and "max_new_tokens" in too_long.text
    prompt = api.post(
        f"/v1/models/{generator}/generate", json={"prompt": "red " * 1100, "max_new_tokens": 1}
    )
    assert prompt.status_code == 422 and "TRAINSERVE_MAX_PROMPT_TOKENS" in prompt.text
    for bad in ({"temperature": -1}, {"top_p": 0}, {"seed": -3}, {"promt": "x"}):
        assert generate(api, generator, **bad).status_code == 422, bad
    predict = api.post(f"/v1/models/{generator}/predict", json={"inputs": ["red"]})
    assert predict.status_code == 422 and "generate" in predict.json()["error"]["message"]
    assert generate(api, "no-such-model").status_code == 404
    no_key = api.post(
        f"/v1/models/{generator}/generate",
        json={"prompt": "red"},
        headers={"Authorization": "Bearer ts_wrong"},
    )
    assert no_key.status_code == 401


def test_a_classifier_does_not_generate(api: TestClient, generator: str, tmp_path: Path) -> None:
    from app.core.config import get_settings
    from tests.integration.test_api import fixed_model  # a registered mlp, no training

    fixed_model("an-mlp", get_settings().data_dir)
    response = generate(api, "an-mlp")
    assert response.status_code == 422 and response.json()["error"]["code"] == "not_a_generator"


def test_a_generator_exports_as_a_folder_transformers_generates_with(
    api: TestClient, generator: str, tmp_path: Path
) -> None:
    import io
    import tarfile

    from transformers import AutoModelForCausalLM, AutoTokenizer

    response = api.get(f"/v1/models/{generator}/versions/1/artifact", params={"format": "hf"})
    assert response.status_code == 200, response.text
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as archive:
        archive.extractall(tmp_path, filter="data")
    (folder,) = tmp_path.iterdir()
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer("red green", add_special_tokens=False, return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=1)
    theirs = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    ours = generate(api, generator, max_new_tokens=6, temperature=0).json()["text"]
    assert theirs.split() == ours.split() == ["blue", "red", "green"] * 2
    onnx = api.get(f"/v1/models/{generator}/versions/1/artifact", params={"format": "onnx"})
    assert onnx.status_code == 422 and "format" in onnx.text
