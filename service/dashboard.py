"""The live operations dashboard: a page every instance serves at ``/dashboard``.

The page is a client of the public API like any other: it queries and mutates over
``POST /graphql`` with ``Authorization: Bearer <token>`` (a token the user pastes, kept in the
tab's ``sessionStorage``) and subscribes over ``graphql-transport-ws`` on ``/graphql``, on the
origin it was loaded from. It has no build step: its own ES modules and stylesheet are
``service/static/dashboard/app/``, and its one library, the ``graphql-ws`` client, is vendored
in ``service/static/dashboard/vendor/`` by ``make vendor-dashboard`` (``service/static/vendor.py``,
the same way as GraphiQL's bundles).

Everything is served from here, under ``ASSETS_PATH``, with long cache lifetimes, because every
address names its content: a vendored file lives under ``vendor/NAME@VERSION/``, and the page's
own files under ``app@DIGEST/``, where ``DIGEST`` is computed from their contents (re-read when a
file changes, so an edited module is a new address at once). The page's tags carry each file's
SHA-384 as ``integrity`` (module scripts through ``<link rel="modulepreload">``), and a strict
Content-Security-Policy keeps it to this server: no inline script or style, no other origin.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
from dataclasses import dataclass
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

HERE = Path(__file__).resolve().parent
DASHBOARD_DIR = HERE / "static" / "dashboard"
APP_DIR = DASHBOARD_DIR / "app"  # the page's own modules and stylesheet
VENDOR_DIR = DASHBOARD_DIR / "vendor"  # written by `make vendor-dashboard`
VENDOR_MANIFEST = VENDOR_DIR / "manifest.json"
TEMPLATE = DASHBOARD_DIR / "index.html"
PAGE_PATH = "/dashboard"
ASSETS_PATH = "/dashboard/assets"
ASSETS_MARKER = "<!-- assets -->"
ENTRY_MODULE = "index.js"
# an address that names its content never changes: a new version is a new address
IMMUTABLE = "public, max-age=31536000, immutable"
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",  # the page's own origin, over http(s) and ws(s)
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        # the page builds its DOM with textContent and createElement, never from HTML strings
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
)
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
}


def sri(data: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


@dataclass(frozen=True, eq=False)  # one object per build (``_build`` is cached): hashed by id
class AppBuild:
    """The page's own files as they are now: a digest of them all, and each one's SRI."""

    digest: str
    files: dict[str, str]  # name → integrity

    @property
    def prefix(self) -> str:
        return f"app@{self.digest}"


def _app_signature() -> tuple[tuple[str, int, int], ...]:
    """What changes when a file of the page changes (cheap: one stat per file)."""
    signature = []
    for path in sorted(APP_DIR.iterdir()):
        if path.is_file() and path.suffix in (".js", ".css"):
            stat = path.stat()
            signature.append((path.name, stat.st_mtime_ns, stat.st_size))
    return tuple(signature)


@functools.lru_cache(maxsize=4)
def _build(signature: tuple[tuple[str, int, int], ...]) -> AppBuild:
    whole = hashlib.sha256()
    files = {}
    for name, _, _ in signature:
        data = (APP_DIR / name).read_bytes()
        whole.update(name.encode() + b"\0" + data + b"\0")
        files[name] = sri(data)
    return AppBuild(digest=whole.hexdigest()[:16], files=files)


def app_build() -> AppBuild:
    return _build(_app_signature())


@functools.cache
def vendored_files() -> dict[str, str]:
    """Every vendored file the manifest lists, path → integrity (empty for a licence file,
    which is served but never loaded by the page)."""
    manifest = json.loads(VENDOR_MANIFEST.read_text(encoding="utf-8"))
    files: dict[str, str] = {}
    for package in manifest["packages"]:
        for file in package["files"]:
            files[file["path"]] = file["integrity"]
        for path in package["licenseFiles"]:
            files[path] = ""
    return files


def asset_tags(build: AppBuild) -> str:
    """The stylesheet, the vendored classic scripts (graphql-ws defines ``window.graphqlWs``),
    a ``modulepreload`` with its integrity for every module the entry imports, then the entry."""

    def url(path: str) -> str:
        return html.escape(f"{ASSETS_PATH}/{path}")

    tags = []
    for name, integrity in build.files.items():
        if name.endswith(".css"):
            href = url(f"{build.prefix}/{name}")
            tags.append(f'<link rel="stylesheet" href="{href}" integrity="{integrity}" />')
    for path, integrity in vendored_files().items():
        if path.endswith(".js"):
            tags.append(f'<script src="{url("vendor/" + path)}" integrity="{integrity}"></script>')
    for name, integrity in build.files.items():
        if name.endswith(".js") and name != ENTRY_MODULE:
            href = url(f"{build.prefix}/{name}")
            tags.append(f'<link rel="modulepreload" href="{href}" integrity="{integrity}" />')
    entry = url(f"{build.prefix}/{ENTRY_MODULE}")
    integrity = build.files[ENTRY_MODULE]
    tags.append(f'<script type="module" src="{entry}" integrity="{integrity}"></script>')
    return "\n    ".join(tags)


@functools.lru_cache(maxsize=4)
def _page_html(build: AppBuild) -> str:
    template = TEMPLATE.read_text(encoding="utf-8")
    if ASSETS_MARKER not in template:
        raise RuntimeError(f"{TEMPLATE} lacks {ASSETS_MARKER}")
    return template.replace(ASSETS_MARKER, asset_tags(build))


def page_html() -> str:
    return _page_html(app_build())


async def dashboard_page(request: Request) -> Response:
    return HTMLResponse(
        page_html(),
        headers={
            "cache-control": "no-cache",
            "content-security-policy": CONTENT_SECURITY_POLICY,
            **SECURITY_HEADERS,
        },
    )


class DashboardAssets(StaticFiles):
    """``app@DIGEST/NAME`` (the page's files, while DIGEST is current) and the vendored files
    the manifest lists; both cached for a year. Anything else, the template included, is 404."""

    def __init__(self) -> None:
        super().__init__(directory=DASHBOARD_DIR)

    async def get_response(self, path: str, scope: Scope) -> Response:
        head, _, rest = path.partition("/")
        if head.startswith("app@"):
            if head != app_build().prefix or "/" in rest or rest not in app_build().files:
                raise HTTPException(status_code=404)
            response = await super().get_response(f"app/{rest}", scope)
        elif head == "vendor" and rest in vendored_files():
            response = await super().get_response(path, scope)
        else:
            raise HTTPException(status_code=404)
        if response.status_code in (200, 304):
            response.headers["cache-control"] = IMMUTABLE
        response.headers["x-content-type-options"] = "nosniff"
        return response


def dashboard_routes() -> list[BaseRoute]:
    """The page and its assets, on every instance (the page holds no secret: it asks for a
    token, and the API decides what that token may see)."""
    return [
        Route(PAGE_PATH, dashboard_page, methods=["GET"], name="dashboard"),
        Mount(ASSETS_PATH, app=DashboardAssets(), name="dashboard-assets"),
    ]
