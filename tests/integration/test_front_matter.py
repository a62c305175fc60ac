"""What a new user meets first: GET / says where to go, the CLI says its version, and a
classifier's answer names the classes its probabilities are for."""

import subprocess
from typing import Any

from fastapi.testclient import TestClient

from app.core.config import get_settings
from app.core.version import VERSION
from tests.support import BIN, api_error, fixed_model, seed_spec


def test_the_root_links_the_docs_and_the_health_checks_without_a_key(api: TestClient) -> None:
    response = api.get("/", headers={"Authorization": ""})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == "trainserve" and body["version"] == VERSION
    for link in ("/ui/", "/docs", "/redoc", "/openapi.json", "/healthz", "/readyz"):
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


def spec_with(**changes: Any) -> dict[str, Any]:
    spec = seed_spec("shape")
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = spec
        for part in parents:
            node = node[part]
        node[last] = value
    return spec


def test_an_unknown_spec_field_says_which_one_was_meant(api: TestClient) -> None:
    response = api.post("/v1/jobs", json=spec_with(training__optimiser={"name": "adam"}))
    error = api_error(response, 422, "validation_error")
    assert error["message"] == "training.optimiser: unknown field; did you mean 'optimizer'?"
    assert error["details"] == [
        {
            "field": "training.optimiser",
            "message": "unknown field; did you mean 'optimizer'?",
            "type": "extra_forbidden",
            "suggestion": "optimizer",
        }
    ]
    hidden = api_error(api.post("/v1/jobs", json=spec_with(model__hiden=[8])), 422)
    assert hidden["details"][0]["suggestion"] == "hidden"
    lr = api_error(api.post("/v1/jobs", json=spec_with(training__optimizer__lrr=0.1)), 422)
    assert lr["details"][0]["suggestion"] == "lr"
    far = api_error(api.post("/v1/jobs", json=spec_with(training__zzqx=1)), 422)
    assert "suggestion" not in far["details"][0]
    assert "expected one of " in far["message"] and "optimizer" in far["message"]


def test_bad_json_says_where_as_an_editor_counts(api: TestClient) -> None:
    body = b'{"model_name": "x",\n  "dataset": {"builtin": "digits"},,\n}'
    response = api.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"})
    error = api_error(response, 400, "invalid_json")
    (detail,) = error["details"]
    assert (detail["field"], detail["line"], detail["column"]) == ("body", 2, 36)
    assert "(line 2, column 36)" in error["message"]


def test_every_error_has_details_in_one_shape(api: TestClient) -> None:
    """A 404, a 409 with facts, a 422 of several fields, a bad query parameter: `details` is
    always a list of {field, message, type, ...}."""
    fixed_model("shape-model", get_settings().data_dir)
    api.put("/v1/models/shape-model/aliases/production", json={"version": 1})
    answers = [
        (api.get("/v1/jobs/00000000-0000-0000-0000-000000000000"), 404),
        (api.delete("/v1/models/shape-model/versions/1"), 409),
        (api.post("/v1/jobs", json=spec_with(training__epochs=-1, training__batch_size=0)), 422),
        (api.get("/v1/jobs", params={"limit": 0}), 422),
        (api.post("/v1/models/shape-model/predict", json={"inputs": [[1]]}), 422),
        (api.get("/v1/models", headers={"Authorization": "Bearer ts_nope"}), 401),
    ]
    for response, status in answers:
        error = api_error(response, status)
        assert isinstance(error["details"], list), error
        for detail in error["details"]:
            assert {"field", "message", "type"} <= set(detail) and detail["message"], error
    several = answers[2][0].json()["error"]
    assert [d["field"] for d in several["details"]] == ["training.epochs", "training.batch_size"]
    assert several["message"].endswith("(and 1 more)")
    in_use = answers[1][0].json()["error"]["details"]
    assert in_use == [
        {
            "field": None,
            "message": "alias production points to version 1; move it first",
            "type": "version_in_use",
            "aliases": ["production"],
        }
    ]
    assert answers[4][0].json()["error"]["details"][0]["field"] == "inputs.0"


def test_a_body_of_many_unknown_fields_gets_a_small_answer(api: TestClient) -> None:
    """Tiny on the wire per field, many fields: details names the first 50, the message
    counts them all, and the answer stays a few KB."""
    spec = seed_spec("many")
    spec["training"].update({f"x{i}": 0 for i in range(20_000)})
    response = api.post("/v1/jobs", json=spec)
    error = api_error(response, 422, "validation_error")
    assert len(error["details"]) == 50 and error["message"].endswith("(and 19999 more)")
    assert len(response.content) < 40_000
