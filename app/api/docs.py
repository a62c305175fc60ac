"""The API docs, /docs (Swagger UI) and /redoc, with their scripts, styles and icon served
by this server from fastapi_offline's copy: an install without internet access (or behind a
proxy that blocks CDNs) still has working docs, and no page here loads anything from
another origin. Open without a key, like /openapi.json (DESIGN.md)."""

from functools import cache
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

ASSETS = Path(fastapi_offline.__file__).parent / "static"
ASSETS_URL = "/docs/assets"
# Every path the docs add, none of them an API route (tests/unit/test_openapi_doc.py).
PATHS = ("/docs", "/redoc", ASSETS_URL)
SWAGGER_UI = {
    # Off: on, Swagger UI keeps the bearer key in localStorage, in clear, for any script of
    # this origin (the dashboard at /ui shares it) to read, and past the browser's close.
    # Keys here are long-lived and may be admin keys; typing one again after a reload is
    # the smaller cost.
    "persistAuthorization": False,
    # None: no "valid" badge, which Swagger UI otherwise fetches from validator.swagger.io.
    "validatorUrl": None,
}
# ReDoc's side menu shows Redocly's logo from their CDN, on every page, with no option to
# turn it off. Served here with an empty image in its place, which ReDoc hides (onError).
REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"


@cache
def redoc_script() -> bytes:
    script = (ASSETS / "redoc.standalone.js").read_bytes()
    assert REDOC_LOGO in script, "ReDoc's bundle changed: check what else it loads"
    return script.replace(REDOC_LOGO, b"data:,")


def install(app: FastAPI) -> None:
    """The two pages and their assets; create_app() turns FastAPI's own (CDN) pages off."""
    openapi_url = app.openapi_url or "/openapi.json"
    title = f"{app.title} API"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=title,
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
            oauth2_redirect_url=None,  # keys are bearer tokens: no OAuth2 flow to return to
            swagger_ui_parameters=SWAGGER_UI,
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=title,
            redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )

    @app.get(f"{ASSETS_URL}/redoc.standalone.js", include_in_schema=False)
    def redoc_js() -> Response:  # before the mount, so it is the one that answers
        return Response(redoc_script(), media_type="text/javascript")

    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")
