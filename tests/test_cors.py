"""CORS (``CORS_ALLOWED_ORIGINS``) over real HTTP: what a browser on another origin is told.

Browsers enforce CORS; the server only answers preflights and adds headers. So these tests
check the headers a browser decides on; ``tests/test_browser_cors.py`` checks what a real
browser then does.
"""

from __future__ import annotations

import httpx
import pytest

from service.settings import Settings, SettingsError
from tests.conftest import MakeMember, ServerFactory

APP = "http://127.0.0.1:3000"
OTHER = "https://evil.example"
QUERY = {"query": "{ me { organisation { name } } }"}


def preflight(origin: str, headers: str = "authorization, content-type") -> dict[str, str]:
    return {
        "origin": origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": headers,
    }


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


async def test_an_allowed_origin_gets_its_preflight_answered(make_server: ServerFactory) -> None:
    server = await make_server(cors_allowed_origins=(APP,))
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.options("/graphql", headers=preflight(APP))
        apollo = await http.options(
            "/graphql",
            headers=preflight(
                APP,
                "authorization, content-type, apollo-require-preflight, "
                "x-apollo-operation-name, apollographql-client-name, apollographql-client-version",
            ),
        )
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == APP
    methods = {m.strip() for m in response.headers["access-control-allow-methods"].split(",")}
    assert methods == {"GET", "POST", "OPTIONS"}
    allowed = {h.strip() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type"} <= {h.lower() for h in allowed}
    assert "access-control-allow-credentials" not in response.headers  # no cookies
    assert int(response.headers["access-control-max-age"]) > 0
    assert "origin" in response.headers["vary"].lower()
    assert apollo.status_code == 200, apollo.text


async def test_an_allowed_origin_can_read_the_answer_and_its_request_id(
    make_server: ServerFactory, make_member: MakeMember
) -> None:
    server = await make_server(cors_allowed_origins=(APP,))
    member = await make_member()
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post(
            "/graphql",
            json=QUERY,
            headers={"origin": APP, "authorization": f"Bearer {member.token}"},
        )
        too_large = await http.post(
            "/graphql",
            content=b"x" * (server.settings.max_body_bytes + 1),
            headers={"origin": APP, "content-type": "application/json"},
        )
    assert response.status_code == 200
    assert response.json()["data"]["me"]["organisation"]["name"].startswith("Org ")
    assert response.headers["access-control-allow-origin"] == APP
    exposed = {h.strip() for h in response.headers["access-control-expose-headers"].split(",")}
    assert "x-request-id" in {h.lower() for h in exposed}
    # refusals carry the header too, so the page can read why
    assert too_large.status_code == 413
    assert too_large.headers["access-control-allow-origin"] == APP


async def test_an_origin_not_allowed_gets_no_cors_headers(make_server: ServerFactory) -> None:
    server = await make_server(cors_allowed_origins=(APP,))
    async with httpx.AsyncClient(base_url=server.url) as http:
        refused = await http.options("/graphql", headers=preflight(OTHER))
        answered = await http.post("/graphql", json=QUERY, headers={"origin": OTHER})
        # same host, other port, and localhost for 127.0.0.1: other origins too
        other_port = await http.options("/graphql", headers=preflight("http://127.0.0.1:3001"))
        localhost = await http.options("/graphql", headers=preflight("http://localhost:3000"))
        unknown_header = await http.options("/graphql", headers=preflight(APP, "x-secret"))
    for response in (refused, other_port, localhost):
        assert response.status_code == 400
        assert "access-control-allow-origin" not in response.headers
    # the server still answers a plain request; the browser keeps the page from reading it
    assert "access-control-allow-origin" not in answered.headers
    assert unknown_header.status_code == 400


async def test_cors_is_off_by_default(make_server: ServerFactory) -> None:
    server = await make_server()
    assert server.settings.cors_allowed_origins == ()
    async with httpx.AsyncClient(base_url=server.url) as http:
        options = await http.options("/graphql", headers=preflight(APP))
        answered = await http.post("/graphql", json=QUERY, headers={"origin": APP})
    assert options.status_code == 405
    assert cors_headers(options) == {}
    assert cors_headers(answered) == {}


async def test_any_origin_with_a_star(make_server: ServerFactory) -> None:
    server = await make_server(cors_allowed_origins=("*",))
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.options("/graphql", headers=preflight(OTHER))
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers


def test_origins_are_read_as_browsers_send_them() -> None:
    settings = Settings.from_env(
        {"CORS_ALLOWED_ORIGINS": " https://App.Example.com:443/ , http://127.0.0.1:3000,"}
    )
    assert settings.cors_allowed_origins == ("http://127.0.0.1:3000", "https://app.example.com")
    assert Settings.from_env({}).cors_allowed_origins == ()


@pytest.mark.parametrize("value", ["https://app.example.com/path", "app.example.com", "null"])
def test_a_value_that_is_not_an_origin_stops_start_up(value: str) -> None:
    with pytest.raises(SettingsError, match="CORS_ALLOWED_ORIGINS"):
        Settings.from_env({"CORS_ALLOWED_ORIGINS": value})
