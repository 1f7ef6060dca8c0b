"""The requests in flight that background work yields to (``integrations.request_load``),
counted by ``service.metrics.HttpMetricsMiddleware`` around each HTTP request."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from integrations.request_load import RequestLoad
from service.metrics import HttpMetricsMiddleware


async def test_the_middleware_counts_requests_in_flight_and_the_load_stays_busy_a_while() -> None:
    load = RequestLoad(busy_at=1)

    async def seen(request: Request) -> JSONResponse:
        return JSONResponse({"in_flight": load.in_flight, "busy": load.busy()})

    app = Starlette(
        routes=[Route("/", seen)], middleware=[Middleware(HttpMetricsMiddleware, load=load)]
    )
    assert not load.busy(within=60)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        answer = (await c.get("/")).json()
    assert answer == {"in_flight": 1, "busy": True}
    assert load.in_flight == 0
    assert not load.busy()  # nothing in flight now
    assert load.busy(within=60)  # but there was a moment ago


def test_a_load_that_never_counts_as_busy() -> None:
    load = RequestLoad(busy_at=0)
    for _ in range(100):
        load.entered()
    assert not load.busy(within=60)
