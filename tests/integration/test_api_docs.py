"""The API docs work offline: /docs and /redoc load everything from this server, without a
key; Swagger UI can authorize with a key; the documented examples are accepted by the API."""

import re

import pytest
from fastapi.testclient import TestClient

from app.schemas.job import SPEC_EXAMPLE

LINK = re.compile(r"""\b(?:src|href)\s*=\s*["']([^"']+)["']""")
TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_load_nothing_from_another_origin_and_need_no_key(
    api: TestClient, page: str
) -> None:
    response = api.get(page, headers={"Authorization": ""})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert not re.search(r"https?://|//[a-z]", html, re.IGNORECASE), "a link off this server"
    links = LINK.findall(html)
    assert len(links) >= 2  # the script, the icon (and Swagger UI's stylesheet)
    for link in links:
        assert link.startswith("/") and not link.startswith("//"), link
        asset = api.get(link, headers={"Authorization": ""})
        assert asset.status_code == 200, link
        wanted = next(t for ext, t in TYPES.items() if link.endswith(ext))
        assert wanted in asset.headers["content-type"], (link, asset.headers["content-type"])
    assert "/openapi.json" in html


def test_swagger_ui_keeps_no_key_and_asks_no_validator(api: TestClient) -> None:
    html = api.get("/docs").text
    assert '"persistAuthorization": false' in html and '"validatorUrl": null' in html


def test_the_spec_example_is_a_valid_job(api: TestClient) -> None:
    response = api.post("/v1/jobs", params={"dry_run": "true"}, json=SPEC_EXAMPLE)
    assert response.status_code == 200, response.text
    assert response.json()["valid"] is True


def test_the_documented_errors_are_what_the_api_answers(api: TestClient) -> None:
    openapi = api.get("/openapi.json").json()
    missing = api.get("/v1/jobs/no-such-job")
    assert "404" in openapi["paths"]["/v1/jobs/{job_id}"]["get"]["responses"]
    assert set(missing.json()) == {"error"}
    assert set(missing.json()["error"]) == set(
        openapi["components"]["schemas"]["ErrorBody"]["properties"]
    )
    v2 = api.get("/v2/models/no-such-model")
    assert v2.status_code == 404 and set(v2.json()) == {"error"}
    assert isinstance(v2.json()["error"], str)
