"""The broadcast layer: SafeBroadcast and RedisPubSubBackend.

Redis tests use the shared server from ``REDIS_URL`` (skipped without it; failed when it is
set but does not answer under ``CI=true``); restart tests start a private ``redis-server`` on a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from broadcaster import Broadcast, Event
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from compat.broadcaster import MemoryBackend
from integrations.bus.broadcast import (
    RESYNC,
    RedisPubSubBackend,
    SafeBroadcast,
    Unsubscribed,
    create_broadcast,
)
from tests.support.redis_server import RedisServer, redis_server, redis_server_available
from tests.support.services import require_redis, unavailable


def _channel(name: str) -> str:
    return f"test-bus-{name}-{uuid.uuid4().hex}"


async def _wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - polling state that has no event to wait on
            await asyncio.sleep(0.01)


async def _next_message(subscriber: object, timeout: float = 5.0) -> str:
    event = await asyncio.wait_for(subscriber.get(), timeout)  # type: ignore[attr-defined]
    return event.message


class _YieldingMemoryBackend(MemoryBackend):
    """MemoryBackend whose subscribe/unsubscribe yield to the loop, like a network backend."""

    async def subscribe(self, channel: str) -> None:
        await asyncio.sleep(0)
        await super().subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        await asyncio.sleep(0)
        await super().unsubscribe(channel)


class _ExplodingMemoryBackend(MemoryBackend):
    """MemoryBackend whose next_published raises when it reads the message "explode"."""

    async def next_published(self) -> Event:
        event = await super().next_published()
        if event.message == "explode":
            raise ConnectionError("backend lost its connection")
        return event


async def _fan_out(
    broadcast: Broadcast,
    channel: str,
    subscribers: int,
    messages: list[str],
    *,
    timeout: float = 5.0,
    tolerate_key_error: bool = False,
) -> list[list[str]]:
    """Subscribe ``subscribers`` tasks concurrently, publish ``messages`` once all are in,
    and return what each subscriber received."""
    received: list[list[str]] = [[] for _ in range(subscribers)]
    entered = 0
    all_entered = asyncio.Event()

    async def subscriber(index: int) -> None:
        nonlocal entered
        # plain Broadcast raises KeyError on exit for the subscribers it lost
        errors = (KeyError,) if tolerate_key_error else ()
        with contextlib.suppress(*errors):
            async with broadcast.subscribe(channel) as sub:
                entered += 1
                if entered == subscribers:
                    all_entered.set()
                with contextlib.suppress(TimeoutError):
                    while len(received[index]) < len(messages):
                        received[index].append(await _next_message(sub, timeout))

    tasks = [asyncio.create_task(subscriber(i)) for i in range(subscribers)]
    try:
        await asyncio.wait_for(all_entered.wait(), 20)
        for message in messages:
            await broadcast.publish(channel, message)
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return received


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def redis_url() -> str:
    return require_redis("redis: broadcast backend")


@pytest.fixture
async def memory_broadcast() -> AsyncIterator[SafeBroadcast]:
    async with create_broadcast("memory://") as broadcast:
        yield broadcast


@pytest.fixture
async def redis_broadcast(redis_url: str) -> AsyncIterator[SafeBroadcast]:
    async with create_broadcast(redis_url) as broadcast:
        yield broadcast


@pytest.fixture
async def redis_admin(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    if not redis_server_available():
        unavailable("redis: restarts", "redis-server is not on PATH")
    with redis_server() as server:
        yield server


async def _numsub(client: Redis, channel: str) -> int:
    ((_, count),) = await client.pubsub_numsub(channel)
    return int(count)


# -- construction -------------------------------------------------------------------------------


def test_create_broadcast_picks_backend_by_scheme() -> None:
    assert isinstance(create_broadcast("memory://")._backend, MemoryBackend)
    for url in ("redis://localhost:6379/0", "rediss://localhost:6380/0"):
        assert isinstance(create_broadcast(url)._backend, RedisPubSubBackend)
    # the URL constructor inherited from Broadcast uses our backend too
    assert isinstance(SafeBroadcast("redis://localhost:6379/0")._backend, RedisPubSubBackend)


def test_create_broadcast_rejects_other_schemes_without_leaking_the_url() -> None:
    with pytest.raises(ValueError, match="memory://, redis:// or rediss://") as excinfo:
        create_broadcast("postgres://app:s3cret@db/app")
    assert "s3cret" not in str(excinfo.value)


# -- memory backend ------------------------------------------------------------------------------


async def test_memory_publish_subscribe(memory_broadcast: SafeBroadcast) -> None:
    channel = _channel("memory")
    async with memory_broadcast.subscribe(channel) as sub:
        await memory_broadcast.publish(channel, "hello")
        assert await asyncio.wait_for(sub.get(), 2) == Event(channel, "hello")
    await memory_broadcast.ping()


async def test_memory_200_concurrent_subscribers_all_receive(
    memory_broadcast: SafeBroadcast,
) -> None:
    received = await _fan_out(memory_broadcast, _channel("fanout"), 200, ["a", "b"])
    assert received == [["a", "b"]] * 200


async def test_plain_broadcast_loses_concurrent_subscribers() -> None:
    """The defect SafeBroadcast fixes: concurrent first subscribers overwrite each other."""
    plain = Broadcast(backend=_YieldingMemoryBackend("memory://"))
    await plain.connect()
    try:
        received = await _fan_out(
            plain, _channel("plain"), 50, ["m"], timeout=0.3, tolerate_key_error=True
        )
    finally:
        await plain.disconnect()
    delivered = sum(messages == ["m"] for messages in received)
    assert delivered < 50, "plain broadcaster.Broadcast no longer loses subscribers"


async def test_safe_broadcast_keeps_concurrent_subscribers() -> None:
    async with SafeBroadcast(backend=_YieldingMemoryBackend("memory://")) as broadcast:
        received = await _fan_out(broadcast, _channel("safe"), 200, ["m"])
    assert received == [["m"]] * 200


async def test_memory_subscribe_unsubscribe_churn_leaves_backend_consistent() -> None:
    backend = _YieldingMemoryBackend("memory://")
    channel = _channel("churn")
    async with SafeBroadcast(backend=backend) as broadcast:

        async def churn(index: int) -> None:
            for round_ in range(10):
                async with broadcast.subscribe(channel):
                    for _ in range((index + round_) % 4):
                        await asyncio.sleep(0)

        await asyncio.gather(*(churn(i) for i in range(100)))
        assert channel not in backend._subscribed
        async with broadcast.subscribe(channel) as sub:
            assert channel in backend._subscribed
            await broadcast.publish(channel, "still here")
            assert await _next_message(sub, 2) == "still here"


async def test_listener_survives_backend_errors(caplog: pytest.LogCaptureFixture) -> None:
    broadcast = SafeBroadcast(
        backend=_ExplodingMemoryBackend("memory://"), listener_retry_delay=0.01
    )
    channel = _channel("explode")
    async with broadcast, broadcast.subscribe(channel) as sub:
        await broadcast.publish(channel, "explode")
        assert await _next_message(sub, 2) == RESYNC  # events may have been lost
        await broadcast.publish(channel, "after")
        assert await _next_message(sub, 2) == "after"
        await broadcast.ping()  # the listener is alive
    assert "Broadcast backend failed" in caplog.text


# -- disconnect ----------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
def broadcast_url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    return str(request.getfixturevalue("redis_url"))


async def test_disconnect_ends_subscribers(broadcast_url: str) -> None:
    broadcast = create_broadcast(broadcast_url)
    await broadcast.connect()
    channel = _channel("disconnect")
    received: list[str] = []
    entered = asyncio.Event()

    async def iterate() -> None:
        async with broadcast.subscribe(channel) as sub:
            entered.set()
            async for event in sub:  # type: ignore[union-attr]
                received.append(event.message)

    task = asyncio.create_task(iterate())
    await asyncio.wait_for(entered.wait(), 5)
    async with broadcast.subscribe(channel) as waiting:
        await broadcast.publish(channel, "one")
        await _wait_until(lambda: received == ["one"])
        assert await _next_message(waiting) == "one"
        await broadcast.disconnect()
        with pytest.raises(Unsubscribed):
            await asyncio.wait_for(waiting.get(), 2)
    await asyncio.wait_for(task, 2)  # iteration ended cleanly
    assert received == ["one"]
    with pytest.raises(RuntimeError):
        await broadcast.ping()


# -- shared Redis -----------------------------------------------------------------------------------


@pytest.mark.redis
async def test_redis_subscribe_then_publish_immediately_delivers(
    redis_broadcast: SafeBroadcast,
) -> None:
    for attempt in range(25):
        channel = _channel("immediate")
        async with redis_broadcast.subscribe(channel) as sub:
            await redis_broadcast.publish(channel, f"m{attempt}")
            assert await _next_message(sub, 2) == f"m{attempt}"
    await redis_broadcast.ping()


@pytest.mark.redis
async def test_redis_1000_concurrent_subscribers_receive_every_event(
    redis_broadcast: SafeBroadcast, redis_admin: Redis
) -> None:
    channel = _channel("thousand")
    messages = [f"event-{i}" for i in range(5)]
    received = await _fan_out(redis_broadcast, channel, 1000, messages)
    assert received == [messages] * 1000
    assert await _numsub(redis_admin, channel) == 0  # unsubscribed once the last one left


@pytest.mark.redis
async def test_redis_concurrent_subscribers_on_many_channels(
    redis_broadcast: SafeBroadcast,
) -> None:
    channels = [_channel(f"many{i}") for i in range(100)]
    results = await asyncio.gather(
        *(_fan_out(redis_broadcast, channel, 5, [channel]) for channel in channels)
    )
    for channel, received in zip(channels, results, strict=True):
        assert received == [[channel]] * 5


@pytest.mark.redis
async def test_redis_unsubscribe_churn_then_fresh_subscriber_receives(
    redis_broadcast: SafeBroadcast, redis_admin: Redis
) -> None:
    channel = _channel("churn")

    async def churn(index: int) -> None:
        for round_ in range(5):
            async with redis_broadcast.subscribe(channel):
                for _ in range((index + round_) % 4):
                    await asyncio.sleep(0)

    await asyncio.gather(*(churn(i) for i in range(200)))
    assert await _numsub(redis_admin, channel) == 0
    async with redis_broadcast.subscribe(channel) as sub:
        assert await _numsub(redis_admin, channel) == 1
        await redis_broadcast.publish(channel, "fresh")
        assert await _next_message(sub, 2) == "fresh"


@pytest.mark.redis
async def test_redis_last_unsubscribe_racing_new_subscribe(
    redis_broadcast: SafeBroadcast, redis_admin: Redis
) -> None:
    """The last subscriber leaves while a new one arrives: the new one must be served."""
    channel = _channel("handover")
    for attempt in range(40):
        old = contextlib.AsyncExitStack()
        await old.enter_async_context(redis_broadcast.subscribe(channel))
        new = contextlib.AsyncExitStack()

        async def enter_after(yields: int, stack: contextlib.AsyncExitStack = new) -> object:
            for _ in range(yields):
                await asyncio.sleep(0)
            return await stack.enter_async_context(redis_broadcast.subscribe(channel))

        leaving = asyncio.create_task(old.aclose())
        sub = await enter_after(attempt % 5)
        async with new:
            # publish as soon as the new subscriber is in, while the old one may still leave
            await redis_broadcast.publish(channel, f"m{attempt}")
            assert await _next_message(sub, 2) == f"m{attempt}"
        await leaving
    assert await _numsub(redis_admin, channel) == 0


# -- private Redis: outages -------------------------------------------------------------------------


def _fast_backend(url: str, **options: float) -> RedisPubSubBackend:
    settings: dict[str, float] = {
        "reconnect_min_delay": 0.02,
        "reconnect_max_delay": 0.2,
        "socket_timeout": 2.0,
    }
    return RedisPubSubBackend(url, **(settings | options))


@pytest.mark.redis
async def test_redis_restart_delivers_resync_then_recovers(private_redis: RedisServer) -> None:
    backend = _fast_backend(private_redis.url)
    channel, late_channel = "orders", "joined-while-down"
    async with SafeBroadcast(backend=backend) as broadcast:
        async with broadcast.subscribe(channel) as sub:
            await broadcast.publish(channel, "before")
            assert await _next_message(sub) == "before"

            private_redis.stop()
            await _wait_until(lambda: not backend.connected)
            with pytest.raises(RedisConnectionError):
                await broadcast.publish(channel, "lost")
            with pytest.raises(RedisConnectionError):
                await broadcast.ping()

            # subscribing while Redis is down is fine: it is applied on reconnect
            async with broadcast.subscribe(late_channel) as late_sub:
                private_redis.start()
                assert await _next_message(sub, 10) == RESYNC
                assert await _next_message(late_sub, 10) == RESYNC
                assert backend.connected

                await broadcast.publish(channel, "after")
                assert await _next_message(sub) == "after"
                await broadcast.publish(late_channel, "late")
                assert await _next_message(late_sub) == "late"
        await broadcast.ping()  # listener alive, Redis reachable


@pytest.mark.redis
async def test_redis_killed_connection_resubscribes(private_redis: RedisServer) -> None:
    backend = _fast_backend(private_redis.url)
    async with (
        SafeBroadcast(backend=backend) as broadcast,
        Redis.from_url(private_redis.url) as admin,
        broadcast.subscribe("stream") as sub,
    ):
        assert await admin.client_kill_filter(_type="pubsub") >= 1
        assert await _next_message(sub) == RESYNC
        await broadcast.publish("stream", "after kill")
        assert await _next_message(sub) == "after kill"
        assert await _numsub(admin, "stream") == 1


@pytest.mark.redis
async def test_redis_connect_fails_fast_when_unreachable(private_redis: RedisServer) -> None:
    private_redis.stop()
    broadcast = SafeBroadcast(backend=_fast_backend(private_redis.url))
    with pytest.raises(RedisConnectionError):
        await broadcast.connect()
    await broadcast.disconnect()  # harmless after a failed connect


@pytest.mark.redis
async def test_redis_stalled_connection_is_detected(private_redis: RedisServer) -> None:
    """A connection that stops answering (here: CLIENT PAUSE) is replaced, then RESYNC."""
    backend = _fast_backend(private_redis.url, ping_interval=0.2, socket_timeout=0.4)
    async with (
        SafeBroadcast(backend=backend) as broadcast,
        Redis.from_url(private_redis.url) as admin,
        broadcast.subscribe("stalled") as sub,
    ):
        await admin.client_pause(1500, all=True)
        assert await _next_message(sub, 10) == RESYNC
        await broadcast.publish("stalled", "after pause")
        assert await _next_message(sub) == "after pause"


@pytest.mark.redis
async def test_redis_disconnect_during_outage(private_redis: RedisServer) -> None:
    backend = _fast_backend(private_redis.url)
    broadcast = SafeBroadcast(backend=backend)
    await broadcast.connect()
    async with broadcast.subscribe("outage") as sub:
        private_redis.stop()
        await _wait_until(lambda: not backend.connected)
        await asyncio.wait_for(broadcast.disconnect(), 2)
        with pytest.raises(Unsubscribed):
            await asyncio.wait_for(sub.get(), 2)
