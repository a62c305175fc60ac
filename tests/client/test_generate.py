"""Base models and generation through the client: a tiny GPT-2 uploaded as a base, a corpus
as a `text` dataset, a causal-lm job, then generate and generate_stream on what it learned."""

import json
from pathlib import Path
from typing import Any

import pytest
from trainserve_client import Client, ConflictError, ValidationError

from tests.client.conftest import Stack
from tests.hf_models import tiny_gpt2
from tests.integration.test_pretrained_jobs import folder_zip

CYCLE = ["red", "green", "blue"]


@pytest.fixture(scope="module")
def base(client: Client, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tiny_gpt2(tmp_path_factory.mktemp("gpt") / "g")
    archive = tmp_path_factory.mktemp("zip") / "gpt.zip"
    archive.write_bytes(folder_zip(folder))
    made = client.base_models.upload(archive, "client-gpt")
    return dict(made)


@pytest.fixture(scope="module")
def generator(client: Client, stack: Stack, base: dict[str, Any]) -> str:
    """Fine-tuned on lines of red green blue, repeated (as tests/integration/test_generation)."""
    lines = [" ".join(CYCLE[(i + j) % 3] for j in range(12)) for i in range(120)]
    corpus = "\n".join(json.dumps({"text": line}) for line in lines).encode()
    dataset = client.datasets.upload(corpus, "colours", "text")
    spec = {
        "model_name": "client-colours",
        "dataset": {"id": dataset["id"]},
        "model": {"arch": "pretrained", "base": base["name"], "head": "causal-lm", "max_len": 16},
        "training": {
            "epochs": 6,
            "batch_size": 8,
            "optimizer": {"name": "adamw", "lr": 0.005},
            "validation_split": 0.2,
        },
    }
    job = client.jobs.wait(client.jobs.submit(spec)["id"], timeout=180)
    assert job["status"] == "succeeded", (job, stack.logs())
    return "client-colours"


def test_a_base_model_listed_and_read(client: Client, base: dict[str, Any]) -> None:
    assert base["family"] == "text-decoder" and base["model_type"] == "gpt2"
    assert base["id"] in {b["id"] for b in client.base_models.list()}
    assert client.base_models.get(base["id"]) == base


def test_generate_continues_the_pattern(client: Client, generator: str) -> None:
    answer = client.models.generate(generator, "red green", max_new_tokens=6, temperature=0)
    assert answer["text"].split() == ["blue", "red", "green", "blue", "red", "green"], answer
    assert (answer["model_version"], answer["tokens"], answer["finish_reason"]) == (1, 6, "length")
    pinned = client.models.generate(
        generator, "red green", version=1, max_new_tokens=6, temperature=0
    )
    assert pinned["text"] == answer["text"]


def test_generate_stream_yields_each_token(client: Client, generator: str) -> None:
    tokens = list(
        client.models.generate_stream(generator, "red green", max_new_tokens=4, temperature=0)
    )
    assert [t["index"] for t in tokens] == [0, 1, 2, 3]
    whole = client.models.generate(generator, "red green", max_new_tokens=4, temperature=0)
    assert "".join(t["text"] for t in tokens) == whole["text"]


def test_an_unknown_option_is_refused(client: Client, generator: str) -> None:
    with pytest.raises(ValidationError) as caught:
        client.models.generate(generator, "red", max_tokens=3)
    assert caught.value.details[0]["field"] == "max_tokens"


def test_a_base_in_use_is_not_deleted(client: Client, generator: str, base: dict[str, Any]) -> None:
    with pytest.raises(ConflictError):
        client.base_models.delete(base["id"])


def test_an_unused_base_is_deleted(client: Client, tmp_path: Path) -> None:
    archive = folder_zip(tiny_gpt2(tmp_path / "g", seed=1))
    made = client.base_models.upload(archive, "client-gpt-spare")
    client.base_models.delete(made["id"])
    assert made["id"] not in {b["id"] for b in client.base_models.list()}
