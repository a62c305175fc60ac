"""The dashboard's files (app/ui/static): nothing from another origin, no inline script, and
served with their content types, an ETag and the security headers."""

import re
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.api import errors
from app.api.routers import ui

STATIC = Path(__file__).resolve().parents[2] / "app" / "ui" / "static"
FILES = sorted(p.name for p in STATIC.iterdir())
# An XML namespace name that SVG needs, never fetched: the one absolute URL allowed.
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()
    errors.install(app)
    app.include_router(ui.router)
    return TestClient(app)


def test_the_dashboard_is_small_and_plain() -> None:
    assert {"index.html", "app.js", "style.css"} <= set(FILES)
    assert all(ui.ASSET_NAME.fullmatch(name) for name in FILES)
    assert sum((STATIC / name).stat().st_size for name in FILES) < 100_000


@pytest.mark.parametrize("name", FILES)
def test_no_file_names_another_origin(name: str) -> None:
    text = (STATIC / name).read_text().replace(SVG_NAMESPACE, "")
    assert re.findall(r"https?:|//[a-z0-9.-]+\.[a-z]{2,}/", text, re.IGNORECASE) == []
    assert "@import" not in text and "url(" not in text


def test_no_inline_script_or_style() -> None:
    html = (STATIC / "index.html").read_text()
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.DOTALL)
    assert scripts and all('src="' in attrs and body.strip() == "" for attrs, body in scripts)
    assert re.search(r"\son[a-z]+\s*=", html) is None  # no onclick="..."
    assert "<style" not in html and "style=" not in html
    assert "javascript:" not in html


def test_the_scripts_write_no_html() -> None:
    for name in FILES:
        if name.endswith(".js"):
            text = (STATIC / name).read_text()
            assert "innerHTML" not in text and "eval(" not in text, name


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/ui/", "text/html; charset=utf-8"),
        ("/ui/index.html", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/style.css", "text/css; charset=utf-8"),
        ("/ui/icon.svg", "image/svg+xml"),
    ],
)
def test_files_are_served_with_their_type_and_headers(
    client: TestClient, path: str, media_type: str
) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    csp = response.headers["content-security-policy"]
    for directive in ("default-src 'self'", "script-src 'self'", "connect-src 'self'"):
        assert directive in csp
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-cache"
    etag = response.headers["etag"]
    again = client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""


def test_ui_redirects_to_its_folder(client: TestClient) -> None:
    response = client.get("/ui", follow_redirects=False)
    assert response.status_code == 308 and response.headers["location"] == "/ui/"


@pytest.mark.parametrize("name", ["nope.js", "..%2Fmain.py", "app.py", ".hidden.js"])
def test_nothing_else_is_served(client: TestClient, name: str) -> None:
    response = client.get(f"/ui/{name}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_the_app_serves_the_dashboard() -> None:
    """Through create_app's middleware; without its lifespan (no database is touched)."""
    from app.main import create_app

    app = TestClient(create_app())
    response = app.get("/ui/app.js")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert "/ui" not in app.get("/openapi.json").text  # not part of the API
