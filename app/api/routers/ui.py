"""The dashboard at /ui/: static files shipped inside the package (app/ui/static), no build
step, nothing fetched from elsewhere. No key is needed for the files (they hold no data);
their scripts call /v1 with the key the user types in, sent only as a header.

Every answer carries a strict Content-Security-Policy (scripts, styles and requests from this
origin only, no inline script, no framing), an ETag, and Cache-Control: no-cache, so a browser
revalidates each file (a 304 when unchanged) and an upgrade is seen on the next load."""

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Header, Path
from fastapi.responses import RedirectResponse, Response

from app.core.errors import NotFound

router = APIRouter(include_in_schema=False)

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# One flat folder of plain names: no path a request could walk out of it with.
ASSET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*\.(html|js|css|svg)$")


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


@lru_cache(maxsize=64)
def load(name: str) -> Asset | None:
    """One file of app/ui/static, read once per process; None when there is no such file."""
    if not ASSET_NAME.fullmatch(name):
        return None
    path = resources.files("app") / "ui" / "static" / name
    if not path.is_file():
        return None
    body = path.read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return Asset(body, CONTENT_TYPES["." + name.rsplit(".", 1)[1]], etag)


def serve(name: str, if_none_match: str | None) -> Response:
    asset = load(name)
    if asset is None:
        raise NotFound(f"the dashboard has no file {name!r}")
    headers = {**SECURITY_HEADERS, "ETag": asset.etag}
    if if_none_match is not None and asset.etag in {t.strip() for t in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


@router.get("/ui")
def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=308, headers=SECURITY_HEADERS)


IfNoneMatch = Annotated[str | None, Header(max_length=1000)]


@router.get("/ui/")
def ui_index(if_none_match: IfNoneMatch = None) -> Response:
    return serve("index.html", if_none_match)


@router.get("/ui/{name}")
def ui_asset(
    name: Annotated[str, Path(max_length=100)], if_none_match: IfNoneMatch = None
) -> Response:
    return serve(name, if_none_match)
