"""SQL statements one orders page costs, at ``first: 10`` and ``first: 100``.

Measured in this process: the app from ``service.app.create_app`` with its lifespan (database,
broadcast, background loops) behind ``httpx.ASGITransport``, the seeded database and token. A
handler on the ``tortoise.db_client`` logger counts the statements of the request: those issued
in the task that runs it or in tasks it starts (Strawberry's DataLoader batches run in tasks of
their own, which inherit a context variable set for the request); the background loops' tasks
were started before and do not. The count of the request's own task alone (what
``tests/test_order_queries.py`` counts with a real server) is printed beside it.

Target: the same count for both page sizes (no N+1), and at most 6.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os

import httpx

from bench.common import UNLIMITED, Row, progress
from bench.context import BenchContext
from bench.orders_page import QUERY
from service.app import create_app
from service.settings import Settings

NAME = "sql_per_request"
REQUIRES: tuple[str, ...] = ()
USES_DATABASE = True
MAX_STATEMENTS = 6
SIZES = (10, 100)

_in_request: contextvars.ContextVar[bool] = contextvars.ContextVar("bench_request", default=False)


class StatementLog(logging.Handler):
    """Records the statements logged while ``_in_request`` is set in the emitting context."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.statements: list[str] = []
        self.own_task = 0
        self.request_task: asyncio.Task[object] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if not _in_request.get():
            return
        self.statements.append(" ".join(record.getMessage().split())[:160])
        if asyncio.current_task() is self.request_task:
            self.own_task += 1


async def _count(client: httpx.AsyncClient, token: str, first: int) -> StatementLog:
    log = StatementLog()
    db_log = logging.getLogger("tortoise.db_client")
    previous = db_log.level
    db_log.addHandler(log)
    db_log.setLevel(logging.DEBUG)

    async def request() -> httpx.Response:
        _in_request.set(True)  # this task's own context: its child tasks inherit it
        log.request_task = asyncio.current_task()
        return await client.post(
            "/graphql",
            json={"query": QUERY, "variables": {"first": first}},
            headers={"authorization": f"Bearer {token}"},
        )

    try:
        response = await asyncio.create_task(request())
    finally:
        db_log.removeHandler(log)
        db_log.setLevel(previous)
    body = response.json()
    if response.status_code != 200 or body.get("errors"):
        raise RuntimeError(f"orders page failed: {response.status_code} {response.text[:500]}")
    if len(body["data"]["orders"]["edges"]) != first:
        raise RuntimeError(f"first: {first} returned {len(body['data']['orders']['edges'])}")
    return log


async def run(ctx: BenchContext) -> list[Row]:
    settings = Settings.from_env(
        {
            **UNLIMITED,
            **os.environ,
            "DATABASE_URL": ctx.database_url,
            "SECRETS_KEY": ctx.secrets_key,
            "LOG_LEVEL": "WARNING",
            "RESPONSE_CACHE": "false",  # count the statements of running the query
        }
    )
    app = create_app(settings)
    token = ctx.data.orders_token
    counts: dict[int, StatementLog] = {}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as c,
    ):
        await _count(c, token, 1)  # warm: the token's last-used stamp is written at most once
        for first in SIZES:
            counts[first] = await _count(c, token, first)
            again = await _count(c, token, first)
            if len(again.statements) != len(counts[first].statements):
                progress(f"  {NAME}: first {first}: unstable count {len(again.statements)}")
    for first, log in counts.items():
        progress(
            f"  {NAME}: first {first}: {len(log.statements)} statements "
            f"({log.own_task} in the request's own task, the rest in DataLoader tasks)"
        )
    for statement in counts[SIZES[0]].statements:
        progress(f"    {statement}")
    small, large = (len(counts[n].statements) for n in SIZES)
    return [
        Row(
            f"{NAME}.first_{SIZES[0]}",
            small,
            "statements",
            target=f"<= {MAX_STATEMENTS}",
            met=small <= MAX_STATEMENTS,
        ),
        Row(
            f"{NAME}.first_{SIZES[1]}",
            large,
            "statements",
            baseline=small,
            ratio=large / small if small else None,
            target=f"== first_{SIZES[0]} and <= {MAX_STATEMENTS}",
            met=large == small and large <= MAX_STATEMENTS,
        ),
    ]
