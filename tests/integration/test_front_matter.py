"""What a new user meets first: GET / says where to go, the CLI says its version, and a
classifier's answer names the classes its probabilities are for."""

import subprocess

from fastapi.testclient import TestClient

from app.core.config import get_settings
from app.core.version import VERSION
from tests.support import BIN, fixed_model


def test_the_root_links_the_docs_and_the_health_checks_without_a_key(api: TestClient) -> None:
    response = api.get("/", headers={"Authorization": ""})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == "trainserve" and body["version"] == VERSION
    for link in ("/docs", "/openapi.json", "/healthz", "/readyz"):
        assert link in body["links"].values()
    assert api.get(body["links"]["health"]).status_code == 200


def test_the_cli_says_its_version_and_its_commands_in_full() -> None:
    done = subprocess.run([str(BIN), "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"trainserve, version {VERSION}"
    helped = subprocess.run([str(BIN), "--help"], capture_output=True, text=True, timeout=60)
    assert "upgraded on start)." in helped.stdout  # descriptions are not cut short


def test_probabilities_come_with_their_classes(api: TestClient) -> None:
    fixed_model("front-cats", get_settings().data_dir, classes=("cat", "dog"))
    body = api.post("/v1/models/front-cats/predict", json={"inputs": [[0.0, 3.0]]}).json()
    assert body["classes"] == ["cat", "dog"] and body["predictions"] == ["dog"]
    assert body["probabilities"][0][1] > body["probabilities"][0][0]
