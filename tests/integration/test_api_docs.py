"""The API docs work offline: /docs and /redoc load everything from this server, without a
key; Swagger UI can authorize with a key; the documented examples are accepted by the API."""

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import sync_playwright

from app.core.config import get_settings
from app.schemas.job import SPEC_EXAMPLE
from tests.support import BIN, Proc, base_env, free_port, wait_http_ok

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


def test_a_body_past_the_limit_is_refused_in_the_shape_of_its_path(api: TestClient) -> None:
    """The body limit answers before any route: on /v2 too, in the /v2 shape."""
    huge = b"0" * (get_settings().max_request_bytes + 1)
    for path in ("/v2/models/x/infer", "/v2/models/x/versions/1/infer"):
        response = api.post(path, content=huge, headers={"content-type": "application/json"})
        assert response.status_code == 413 and isinstance(response.json()["error"], str), path
    response = api.post("/v1/models/x/predict", content=huge)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


@pytest.fixture(scope="module")
def api_url(configured: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `trainserve api`, for a real browser."""
    port = free_port()
    log: Path = tmp_path_factory.mktemp("docs-api") / "api.log"
    proc = Proc([str(BIN), "api", "--port", str(port)], base_env() | configured, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{url}/readyz", proc)
        yield url
    finally:
        proc.stop()


def test_a_browser_renders_both_pages_with_requests_to_this_server_only(api_url: str) -> None:
    """What the HTML names is not all a page loads: scripts fetch too (ReDoc's bundle fetched
    Redocly's logo from their CDN; Swagger UI would ask validator.swagger.io for a badge), so
    a browser watches."""
    origin = urlsplit(api_url).netloc
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox"]
        )
        page = browser.new_page()
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.goto(f"{api_url}/docs")
        page.wait_for_selector(".opblock", timeout=30_000)
        assert page.locator("button.authorize").count() == 1  # the bearer scheme
        operations = page.locator(".opblock").count()
        page.goto(f"{api_url}/redoc")
        page.wait_for_selector("[role=menuitem]", timeout=30_000)
        browser.close()
    paths = httpx.get(f"{api_url}/openapi.json").json()["paths"]
    assert operations == sum(len(item) for item in paths.values())
    elsewhere = [u for u in requested if urlsplit(u.removeprefix("blob:")).netloc != origin]
    assert elsewhere == [] and f"{api_url}/openapi.json" in requested
