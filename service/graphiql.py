"""GraphiQL (``DEBUG=true``) served from this server alone, so it works without internet.

The page is Strawberry's GraphiQL page (``service/templates/graphiql.html``) with its React,
GraphiQL and explorer-plugin bundles vendored in ``service/static/graphiql/`` by
``make vendor-graphiql`` (``service/static/vendor.py``) and served under ``ASSETS_PATH``. The
page's ``<script>`` and ``<link>`` tags are made from the vendored manifest, each with the
file's SHA-384 as its ``integrity``, and a Content-Security-Policy keeps the page to this
server: a reference to anywhere else is refused by the browser, not silently fetched.
"""

from __future__ import annotations

import functools
import html
import json
from pathlib import Path

from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from service.settings import Settings

HERE = Path(__file__).resolve().parent
ASSETS_DIR = HERE / "static" / "graphiql"
MANIFEST = ASSETS_DIR / "manifest.json"
TEMPLATE = HERE / "templates" / "graphiql.html"
ASSETS_PATH = "/static/graphiql"
ASSETS_MARKER = "<!-- vendored assets -->"
# a versioned file (``NAME@VERSION/…``) never changes: a new version is a new address
IMMUTABLE = "public, max-age=31536000, immutable"
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",  # the page's own origin, over http(s) and ws(s)
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    )
)


def _versioned(path: str) -> bool:
    """Whether ``path`` is inside a ``NAME@VERSION`` (or ``@SCOPE/NAME@VERSION``) directory."""
    return any("@" in part[1:] for part in Path(path).parts[:2])


class VendoredFiles(StaticFiles):
    """The vendored bundles: a versioned file is cached for a year, anything else revalidated."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["cache-control"] = IMMUTABLE if _versioned(path) else "no-cache"
        response.headers["x-content-type-options"] = "nosniff"
        return response


def asset_tags() -> str:
    """``<link>`` for every vendored stylesheet, then ``<script>`` for every script, in the
    manifest's order (React before GraphiQL before its plugin)."""
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    files = [file for package in manifest["packages"] for file in package["files"]]
    styles, scripts = [], []
    for file in files:
        url = html.escape(f"{ASSETS_PATH}/{file['path']}")
        integrity = html.escape(file["integrity"])
        if file["path"].endswith(".css"):
            styles.append(f'<link rel="stylesheet" href="{url}" integrity="{integrity}" />')
        elif file["path"].endswith(".js"):
            scripts.append(f'<script src="{url}" integrity="{integrity}"></script>')
    return "\n    ".join(styles + scripts)


@functools.cache
def page_html() -> str:
    """The GraphiQL page, built once per process."""
    template = TEMPLATE.read_text(encoding="utf-8")
    if ASSETS_MARKER not in template:
        raise RuntimeError(f"{TEMPLATE} lacks {ASSETS_MARKER}")
    return template.replace(ASSETS_MARKER, asset_tags())


def page_response() -> HTMLResponse:
    return HTMLResponse(
        page_html(),
        headers={
            "cache-control": "no-cache",
            "content-security-policy": CONTENT_SECURITY_POLICY,
            "x-content-type-options": "nosniff",
        },
    )


def asset_routes(settings: Settings) -> list[BaseRoute]:
    """The mount that serves the vendored bundles: only with ``DEBUG=true``, like the page."""
    if not settings.debug:
        return []
    return [Mount(ASSETS_PATH, app=VendoredFiles(directory=ASSETS_DIR), name="graphiql-assets")]
