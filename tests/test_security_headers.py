"""Every HTTP answer carries the standard security headers, pages keep their own CSP, HSTS is
sent on https requests only (here: ``X-Forwarded-Proto: https`` from a trusted proxy address),
and no answer names the server software, in the test harness and in ``main.py serve``."""

from __future__ import annotations

from pathlib import Path

import httpx

from service.settings import Settings
from tests.support.graphql_client import GraphQLHttp
from tests.support.server import RunningServer, app_process

EXPECTED = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


async def _get(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.get(url)


async def test_every_answer_carries_the_security_headers_and_no_banner(
    server: RunningServer, client: GraphQLHttp
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        answers = {
            "healthz": await http.get("/healthz"),
            "graphql": await http.post("/graphql", json={"query": "{ __typename }"}),
            "refused": await http.post("/graphql", content=b"not json"),
            "missing": await http.get("/nowhere"),
            "dashboard": await http.get("/dashboard"),
        }
    for name, answer in answers.items():
        for header, value in EXPECTED.items():
            assert answer.headers.get(header) == value, (name, header, answer.headers)
        assert "server" not in answer.headers, (name, answer.headers)
        assert "strict-transport-security" not in answer.headers, name  # plain http
        csp = answer.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp, (name, csp)
    assert answers["graphql"].headers["content-security-policy"] == (
        "default-src 'none'; frame-ancestors 'none'"
    )
    # a page keeps the policy it sends itself (its scripts and styles are its own)
    assert "script-src" in answers["dashboard"].headers["content-security-policy"]


async def test_hsts_on_requests_that_came_over_tls(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        behind_tls = await http.get("/healthz", headers={"X-Forwarded-Proto": "https"})
        plain = await http.get("/healthz")
    assert behind_tls.headers["strict-transport-security"] == "max-age=31536000"
    assert "strict-transport-security" not in plain.headers


async def test_main_py_serve_names_no_server_software(
    database_url: str, base_settings: Settings, tmp_path: Path
) -> None:
    env = {"DATABASE_URL": database_url, "REDIS_URL": "", "SECRETS_KEY": base_settings.secrets_key}
    async with app_process(env, log=tmp_path / "serve.log") as url:
        answer = await _get(f"{url}/healthz")
    assert answer.status_code == 200
    assert "server" not in answer.headers
    assert answer.headers["x-content-type-options"] == "nosniff"
