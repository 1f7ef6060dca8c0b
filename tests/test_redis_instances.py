"""The event stream across processes through real Redis, and through a Redis outage."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from schema.global_ids import gid
from tests.conftest import MakeMember
from tests.support.graphql_client import EVENTS_SUBSCRIPTION, GraphQLHttp, GraphQLWebSocket
from tests.support.redis_server import RedisServer, redis_server, redis_server_available
from tests.support.server import RunningServer, app_process
from tests.support.services import require_postgres, require_redis, unavailable

ROOT = Path(__file__).resolve().parent.parent
RENAME = "mutation($n: String!) { renameOrganisation(input: {name: $n}) { userErrors { code } } }"
NO_SAFETY_POLL = 300.0  # so that only the broadcast can deliver within the test


def second_instance(database_url: str, redis_url: str) -> AbstractAsyncContextManager[str]:
    """Another instance on the same database and Redis, safety poll out of the way."""
    return app_process(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "EVENT_RESYNC_INTERVAL": str(NO_SAFETY_POLL),
        }
    )


async def test_subscriber_on_one_instance_sees_a_mutation_on_another(
    make_server, make_member: MakeMember, database_url: str
) -> None:
    redis_url = require_redis("redis: two instances")
    require_postgres("redis: two instances")
    a: RunningServer = await make_server(redis_url=redis_url, event_resync_interval=NO_SAFETY_POLL)
    async with second_instance(database_url, redis_url) as b_url:
        await _mutations_on_b_reach_a(a, GraphQLHttp(b_url), make_member)


async def _mutations_on_b_reach_a(
    a: RunningServer, b: GraphQLHttp, make_member: MakeMember
) -> None:
    try:
        member = await make_member()
        ws = await GraphQLWebSocket.connect(a.ws_url, token=member.token)
        await ws.acknowledged()
        await ws.subscribe(EVENTS_SUBSCRIPTION, {"types": ["ORGANISATION_UPDATED"]})
        await a.wait_for_subscribers(1)
        for name in ("made on B", "again on B"):
            assert (await b.data(RENAME, {"n": name}, token=member.token))[
                "renameOrganisation"
            ] == {"userErrors": []}
        received = [(await ws.next_data(timeout=10))["events"]["payload"]["name"] for _ in range(2)]
        assert received == ["made on B", "again on B"]
        await ws.close()
    finally:
        await b.close()


async def test_redis_outage_loses_nothing_locally(make_server, make_member: MakeMember) -> None:
    """Redis stops during a mutation: the mutation commits, this instance's subscribers are
    still served, readiness says 503, and all recovers by itself when Redis returns."""
    if not redis_server_available():
        unavailable("redis: outage", "redis-server is not installed")
    with redis_server() as redis:
        server: RunningServer = await make_server(
            redis_url=redis.url, event_resync_interval=NO_SAFETY_POLL, outbox_retry_interval=0.2
        )
        member = await make_member()
        client = GraphQLHttp(server.url)
        ws = await GraphQLWebSocket.connect(server.ws_url, token=member.token)
        try:
            await ws.acknowledged()
            await ws.subscribe(EVENTS_SUBSCRIPTION, {"types": ["ORGANISATION_UPDATED"]})
            await server.wait_for_subscribers(1)
            await client.data(RENAME, {"n": "before"}, token=member.token)
            assert (await ws.next_data())["events"]["payload"]["name"] == "before"

            redis.stop()
            data = await client.data(RENAME, {"n": "during outage"}, token=member.token)
            assert data["renameOrganisation"]["userErrors"] == []  # committed without Redis
            assert (await ws.next_data())["events"]["payload"]["name"] == "during outage"
            ready = await client.http.get("/readyz")
            assert ready.status_code == 503 and "broadcast" in ready.json()["problems"]

            redis.restart()
            deadline = asyncio.get_running_loop().time() + 15
            while (await client.http.get("/readyz")).status_code != 200:
                assert asyncio.get_running_loop().time() < deadline, "never became ready again"
                await asyncio.sleep(0.2)
            await client.data(RENAME, {"n": "after"}, token=member.token)
            assert (await ws.next_data(timeout=10))["events"]["payload"]["name"] == "after"
            with pytest.raises(TimeoutError):
                await ws.receive(timeout=0.5)  # and nothing twice
        finally:
            await ws.close()
            await client.close()
            await server.stop()


async def test_redis_outage_event_reaches_other_instance_when_redis_returns(
    make_server, make_member: MakeMember, database_url: str
) -> None:
    """A mutation on B while Redis is down reaches a subscriber on A once Redis is back."""
    if not redis_server_available():
        unavailable("redis: outage", "redis-server is not installed")
    require_postgres("redis: two instances")
    with redis_server() as redis:
        a: RunningServer = await make_server(
            redis_url=redis.url, event_resync_interval=NO_SAFETY_POLL, outbox_retry_interval=0.2
        )
        async with second_instance(database_url, redis.url) as b_url:
            await _outage_on_b_reaches_a(a, GraphQLHttp(b_url), redis, make_member)
            await a.stop()


async def _outage_on_b_reaches_a(
    a: RunningServer, b: GraphQLHttp, redis: RedisServer, make_member: MakeMember
) -> None:
    """A subscriber on A; Redis stops, B commits a change; A hears of it once Redis is back."""
    member = await make_member()
    ws = await GraphQLWebSocket.connect(a.ws_url, token=member.token)
    try:
        await ws.acknowledged()
        await ws.subscribe(EVENTS_SUBSCRIPTION, {"types": ["ORGANISATION_UPDATED"]})
        await a.wait_for_subscribers(1)
        redis.stop()
        data = await b.data(RENAME, {"n": "on B, Redis down"}, token=member.token)
        assert data["renameOrganisation"]["userErrors"] == []
        # Usually nothing carries it to A until Redis is back. But A's hub also catches up
        # from the outbox whenever its broadcast connection reports a possible loss, and
        # on a loaded machine that report can come after B's commit: the event may then
        # arrive during the outage. Either way it arrives once.
        early: dict | None = None
        with contextlib.suppress(TimeoutError):
            early = (await ws.next_data(timeout=1.0))["events"]
        redis.restart()
        event = early or (await ws.next_data(timeout=20))["events"]
        assert event["payload"]["name"] == "on B, Redis down"
        with pytest.raises(TimeoutError):
            await ws.receive(timeout=0.5)
    finally:
        await ws.close()
        await b.close()


async def test_service_starts_while_redis_is_down_and_catches_up(
    make_server, make_member: MakeMember
) -> None:
    if not redis_server_available():
        unavailable("redis: outage", "redis-server is not installed")
    with redis_server() as redis:
        redis.stop()
        server: RunningServer = await make_server(
            redis_url=redis.url, event_resync_interval=NO_SAFETY_POLL
        )
        client = GraphQLHttp(server.url)
        try:
            assert (await client.http.get("/readyz")).status_code == 503
            member = await make_member()
            await client.data(RENAME, {"n": "while down"}, token=member.token)
            ws = await GraphQLWebSocket.connect(server.ws_url, token=member.token)
            await ws.acknowledged()
            await ws.subscribe(
                EVENTS_SUBSCRIPTION, {"after": gid("Event", 0), "types": ["ORGANISATION_UPDATED"]}
            )
            assert (await ws.next_data())["events"]["payload"]["name"] == "while down"  # replay
            redis.restart()
            deadline = asyncio.get_running_loop().time() + 15
            while (await client.http.get("/readyz")).status_code != 200:
                assert asyncio.get_running_loop().time() < deadline, "never became ready"
                await asyncio.sleep(0.2)
            await client.data(RENAME, {"n": "after start"}, token=member.token)
            assert (await ws.next_data(timeout=10))["events"]["payload"]["name"] == "after start"
            await ws.close()
        finally:
            await client.close()
            await server.stop()
