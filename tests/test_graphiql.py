"""GraphiQL (DEBUG=true) is served with every asset from this server: nothing from a CDN.

``tests/test_browser_graphiql.py`` runs the page in Chromium with the internet cut off.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import runpy
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

from service import graphiql
from tests.conftest import ServerFactory

HTML = {"accept": "text/html"}


class References(HTMLParser):
    """Every address the page's tags load: ``src`` of scripts, ``href`` of links."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        for attribute in ("src", "href"):
            if named.get(attribute):
                self.found.append((tag, named[attribute] or "", named))


def references(page: str) -> list[tuple[str, str, dict[str, str | None]]]:
    parser = References()
    parser.feed(page)
    return parser.found


def pinned_packages() -> set[tuple[str, str]]:
    """(name, version) of the packages ``make vendor-graphiql`` pins."""
    script = runpy.run_path(str(graphiql.HERE / "static" / "vendor.py"), run_name="vendor")
    return {(package.name, package.version) for package in script["PACKAGES"]}


async def test_the_page_loads_only_assets_this_server_serves(make_server: ServerFactory) -> None:
    server = await make_server(debug=True)
    async with httpx.AsyncClient(base_url=server.url) as http:
        page = await http.get("/graphql", headers=HTML)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert re.search(r"(?i)\b(https?|wss?)://", page.text) is None  # no absolute address
        assert "//" not in "".join(url for _, url, _ in references(page.text))
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "connect-src 'self'" in csp

        loaded = [(tag, url, attrs) for tag, url, attrs in references(page.text)]
        assets = [(tag, url, attrs) for tag, url, attrs in loaded if not url.startswith("data:")]
        assert {tag for tag, _, _ in assets} == {"script", "link"}
        assert len(assets) == sum(
            len(package["files"])
            for package in json.loads(graphiql.MANIFEST.read_text())["packages"]
        )
        for tag, url, attrs in assets:
            absolute = urljoin(f"{server.url}/graphql", url)
            assert urlsplit(absolute).netloc == urlsplit(server.url).netloc, url
            response = await http.get(absolute)
            assert response.status_code == 200, url
            kind = "text/javascript" if tag == "script" else "text/css"
            assert response.headers["content-type"].startswith(kind), url
            assert "immutable" in response.headers["cache-control"], url
            assert response.headers["x-content-type-options"] == "nosniff"
            digest = base64.b64encode(hashlib.sha384(response.content).digest()).decode()
            assert attrs["integrity"] == f"sha384-{digest}", url
            revalidated = await http.get(
                absolute, headers={"if-none-match": response.headers["etag"]}
            )
            assert revalidated.status_code == 304


async def test_without_debug_neither_page_nor_assets_are_served(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    asset = f"{graphiql.ASSETS_PATH}/react@18.2.0/umd/react.production.min.js"
    async with httpx.AsyncClient(base_url=server.url) as http:
        page = await http.get("/graphql", headers=HTML)
        served = await http.get(asset)
    assert page.status_code == 404
    assert served.status_code == 404


def test_the_manifest_lists_the_vendored_files_and_their_licences() -> None:
    manifest = json.loads(graphiql.MANIFEST.read_text())
    assert {(p["name"], p["version"]) for p in manifest["packages"]} == pinned_packages()
    listed = set()
    for package in manifest["packages"]:
        assert package["source"] == f"npm:{package['name']}@{package['version']}"
        assert package["integrity"].startswith("sha512-")
        assert package["license"] and package["licenseFiles"]
        for path in package["licenseFiles"]:
            assert "Permission is hereby granted" in (graphiql.ASSETS_DIR / path).read_text()
            listed.add(path)
        for file in package["files"]:
            data = (graphiql.ASSETS_DIR / file["path"]).read_bytes()
            digest = base64.b64encode(hashlib.sha384(data).digest()).decode()
            assert file["integrity"] == f"sha384-{digest}", file["path"]
            listed.add(file["path"])
    on_disk = {
        str(path.relative_to(graphiql.ASSETS_DIR))
        for path in graphiql.ASSETS_DIR.rglob("*")
        if path.is_file() and path != graphiql.MANIFEST
    }
    assert on_disk == listed  # nothing vendored that the manifest does not account for


def test_the_page_template_has_no_remote_reference() -> None:
    template = Path(graphiql.TEMPLATE).read_text()
    assert graphiql.ASSETS_MARKER in template
    assert re.search(r"(?i)\b(https?|wss?)://", template) is None
