"""Broadcast layer on top of broadcaster 0.3.1, with its measured defects fixed.

* ``SafeBroadcast`` replaces ``broadcaster.Broadcast``'s subscribe/unsubscribe bookkeeping
  (which loses concurrent subscribers) and supervises the listener task.
* ``RedisPubSubBackend`` replaces broadcaster's ``RedisBackend`` (which, with redis-py 8,
  never delivers and dies on the first connection error). It reconnects with backoff,
  resubscribes, and then delivers ``RESYNC`` on every subscribed channel.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import urlparse

from broadcaster import BroadcastBackend, Event
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from compat.broadcaster import MemoryBackend, Subscriber, Unsubscribed

__all__ = [
    "RESYNC",
    "RedisPubSubBackend",
    "SafeBroadcast",
    "Subscriber",
    "Unsubscribed",
    "create_broadcast",
]

logger = logging.getLogger(__name__)

RESYNC: str = "\u0000resync"
"""Message delivered on every subscribed channel after the backend lost its connection:
messages may have been missed, catch up from the database."""

_SUBSCRIBE_BATCH = 256


def _describe(exc: BaseException) -> str:
    # redis-py 8's RedisError.__repr__ drops the message ("network:ConnectionError").
    return f"{type(exc).__name__}: {exc}"


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


async def _cancel_and_wait(*tasks: asyncio.Task[Any]) -> None:
    """Cancel ``tasks`` and wait until they have ended.

    Cancels again while they run on: on Python 3.11, ``asyncio.wait_for`` (used inside
    redis-py) swallows a cancellation that races with the completion of what it awaits.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: the caller has dealt with the outcome already


async def _close_pubsub(pubsub: PubSub) -> None:
    try:
        await pubsub.aclose()
    except Exception:  # closing a broken connection may fail; nothing left to do
        logger.debug("Error while closing Redis pub/sub connection", exc_info=True)


class RedisPubSubBackend(BroadcastBackend):
    """Redis pub/sub backend with one supervised listener task.

    The listener owns the pub/sub connection: it (re)connects, subscribes the wanted
    channels and reads messages; ``subscribe``/``unsubscribe`` send their command through
    it and wait for Redis' confirmation. Publishing uses a separate client with retries.
    """

    def __init__(
        self,
        url: str,
        *,
        reconnect_min_delay: float = 0.05,
        reconnect_max_delay: float = 2.0,
        socket_timeout: float | None = 5.0,
        ping_interval: float = 15.0,
        publish_retries: int = 3,
        start_when_unreachable: bool = False,
    ) -> None:
        # BroadcastBackend.__init__ raises NotImplementedError: deliberately not called.
        if reconnect_min_delay <= 0 or reconnect_max_delay < reconnect_min_delay:
            raise ValueError("need 0 < reconnect_min_delay <= reconnect_max_delay")
        if ping_interval <= 0:
            raise ValueError("ping_interval must be positive")
        self._url = url
        self._min_delay = reconnect_min_delay
        self._max_delay = reconnect_max_delay
        self._socket_timeout = socket_timeout
        self._ping_interval = ping_interval
        # How long to wait for a reply (PING, SUBSCRIBE confirmation) before giving up.
        self._reply_timeout = socket_timeout or ping_interval
        self._publish_retries = publish_retries
        self._start_when_unreachable = start_when_unreachable

        self.connected: bool = False
        """True while the pub/sub connection is up."""

        self._wanted: set[str] = set()
        # Per (kind, channel): FIFO of confirmations still expected from Redis. An entry is
        # the future of the caller waiting for it, or None for the listener's own commands.
        self._pending: dict[tuple[str, str], deque[asyncio.Future[None] | None]] = {}
        self._resync_due: set[str] = set()
        self._commands: asyncio.Queue[tuple[str, tuple[str, ...]]] | None = None
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._publisher: Redis | None = None
        self._subscriber: Redis | None = None
        self._listener: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect the pub/sub connection (raises if Redis is unreachable now)."""
        if self._listener is not None:
            raise RuntimeError("RedisPubSubBackend is already connected")
        self._events = asyncio.Queue()
        common: dict[str, Any] = {
            "socket_timeout": self._socket_timeout,
            "socket_connect_timeout": self._socket_timeout,
        }
        self._publisher = Redis.from_url(
            self._url,
            retry=Retry(
                ExponentialBackoff(cap=self._max_delay, base=self._min_delay),
                self._publish_retries,
            ),
            **common,
        )
        # No retries inside redis-py for the subscriber: the listener supervises it.
        self._subscriber = Redis.from_url(
            self._url, retry=Retry(NoBackoff(), 0), socket_keepalive=True, **common
        )
        pubsub: PubSub | None
        try:
            pubsub = await self._open_pubsub()
        except Exception as exc:
            if not self._start_when_unreachable:
                await self._close_clients()
                raise
            # Degraded start: the listener keeps trying; readiness (ping) fails meanwhile.
            logger.warning(
                "Redis unreachable at start (%s); connecting in background", _describe(exc)
            )
            pubsub = None
        except BaseException:
            await self._close_clients()
            raise
        self._listener = asyncio.create_task(self._supervise(pubsub), name="redis-pubsub-listener")

    async def disconnect(self) -> None:
        """Stop the listener and close both connections; never raises."""
        listener, self._listener = self._listener, None
        if listener is not None:
            await _cancel_and_wait(listener)
        self._end_session()
        self._wanted.clear()
        await self._close_clients()

    async def _close_clients(self) -> None:
        clients = (self._publisher, self._subscriber)
        self._publisher = self._subscriber = None
        for client in clients:
            if client is not None:
                try:
                    await client.aclose()
                except Exception:
                    logger.debug("Error while closing Redis client", exc_info=True)

    # -- BroadcastBackend API ---------------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        """Subscribe; when connected, returns once Redis has confirmed the subscription.

        While disconnected it returns at once: the channel is subscribed on reconnect,
        followed by a ``RESYNC`` event.
        """
        self._wanted.add(channel)
        await self._request("subscribe", channel)

    async def unsubscribe(self, channel: str) -> None:
        """Unsubscribe; when connected, returns once Redis has confirmed it."""
        self._wanted.discard(channel)
        await self._request("unsubscribe", channel)

    async def publish(self, channel: str, message: Any) -> None:
        """Publish (with retries); raises if Redis stays unreachable."""
        if self._publisher is None:
            raise RuntimeError("RedisPubSubBackend is not connected")
        await self._publisher.publish(channel, message)

    async def next_published(self) -> Event:
        return await self._events.get()

    async def ping(self) -> None:
        """Raise unless the pub/sub connection is up and Redis answers PING."""
        if self._publisher is None or not self.connected:
            raise RedisConnectionError("Redis pub/sub connection is down")
        await self._publisher.ping()

    # -- listener ---------------------------------------------------------------------------

    async def _open_pubsub(self) -> PubSub:
        assert self._subscriber is not None
        pubsub = self._subscriber.pubsub()
        try:
            await pubsub.connect()
        except BaseException:
            await _close_pubsub(pubsub)
            raise
        return pubsub

    async def _supervise(self, pubsub: PubSub | None) -> None:
        loop = asyncio.get_running_loop()
        delay = self._min_delay
        resync = False
        failures = 0
        while True:
            if pubsub is None:
                try:
                    pubsub = await self._open_pubsub()
                except Exception as exc:
                    failures += 1
                    logger.warning(
                        "Redis pub/sub reconnect attempt %d failed (%s); retrying in %.2fs",
                        failures,
                        _describe(exc),
                        delay,
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._max_delay)
                    continue
                logger.info(
                    "Redis pub/sub reconnected; resubscribing %d channel(s)", len(self._wanted)
                )
                failures = 0
            started = loop.time()
            try:
                await self._run_session(pubsub, resync=resync)
            except Exception as exc:
                logger.warning("Redis pub/sub connection lost (%s)", _describe(exc))
            finally:
                self._end_session()
                await _close_pubsub(pubsub)
            pubsub = None
            resync = True
            if loop.time() - started >= self._max_delay:
                delay = self._min_delay  # it was up for a while: not a flapping server
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_delay)

    async def _run_session(self, pubsub: PubSub, *, resync: bool) -> None:
        commands: asyncio.Queue[tuple[str, tuple[str, ...]]] = asyncio.Queue()
        channels = sorted(self._wanted)
        for channel in channels:
            self._expect("subscribe", channel, None)
        for start in range(0, len(channels), _SUBSCRIBE_BATCH):
            commands.put_nowait(("SUBSCRIBE", tuple(channels[start : start + _SUBSCRIBE_BATCH])))
        self._resync_due = set(channels) if resync else set()
        # From here on, subscribe()/unsubscribe() queue their commands after this snapshot.
        self._commands = commands
        self.connected = True
        reader = asyncio.create_task(self._read_loop(pubsub, commands))
        writer = asyncio.create_task(self._write_loop(pubsub, commands))
        try:
            done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
            raise RedisConnectionError("pub/sub session ended unexpectedly")
        finally:
            await _cancel_and_wait(reader, writer)

    async def _write_loop(
        self, pubsub: PubSub, commands: asyncio.Queue[tuple[str, tuple[str, ...]]]
    ) -> None:
        connection = pubsub.connection
        current = asyncio.current_task()
        assert connection is not None and current is not None
        while True:
            name, args = await commands.get()
            if not connection.is_connected:
                # Never let redis-py silently reconnect a socket without our subscriptions.
                raise RedisConnectionError("pub/sub connection closed")
            await connection.send_command(name, *args, check_health=False)
            if current.cancelling():  # a cancellation swallowed by redis-py's wait_for
                raise asyncio.CancelledError

    async def _read_loop(
        self, pubsub: PubSub, commands: asyncio.Queue[tuple[str, tuple[str, ...]]]
    ) -> None:
        ping_sent = False
        while True:
            awaiting_reply = ping_sent or bool(self._pending)
            timeout = self._reply_timeout if awaiting_reply else self._ping_interval
            message = await pubsub.get_message(ignore_subscribe_messages=False, timeout=timeout)
            if message is None:
                if awaiting_reply:
                    raise TimeoutError(f"Redis sent nothing for {timeout}s while a reply was due")
                commands.put_nowait(("PING", ()))  # detect half-open connections
                ping_sent = True
                continue
            ping_sent = False
            kind = message["type"]
            if kind == "message":
                self._events.put_nowait(Event(_text(message["channel"]), _text(message["data"])))
            elif kind in ("subscribe", "unsubscribe"):
                self._confirm(kind, _text(message["channel"]))

    def _expect(self, kind: str, channel: str, future: asyncio.Future[None] | None) -> None:
        self._pending.setdefault((kind, channel), deque()).append(future)

    def _confirm(self, kind: str, channel: str) -> None:
        waiting = self._pending.get((kind, channel))
        if waiting:
            future = waiting.popleft()
            if not waiting:
                del self._pending[(kind, channel)]
            if future is not None and not future.done():
                future.set_result(None)
        if kind == "subscribe" and channel in self._resync_due:
            self._resync_due.discard(channel)
            if channel in self._wanted:
                self._events.put_nowait(Event(channel, RESYNC))

    async def _request(self, kind: str, channel: str) -> None:
        commands = self._commands
        if not self.connected or commands is None:
            return  # applied (with RESYNC) when the listener reconnects
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._expect(kind, channel, future)
        commands.put_nowait((kind.upper(), (channel,)))
        await future

    def _end_session(self) -> None:
        self.connected = False
        self._commands = None
        self._resync_due = set()
        pending, self._pending = self._pending, {}
        # The wanted set is replayed on reconnect (then RESYNC), so waiters can go on.
        for waiting in pending.values():
            for future in waiting:
                if future is not None and not future.done():
                    future.set_result(None)


@dataclass
class _ChannelState:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class SafeBroadcast:
    """``broadcaster.Broadcast``'s public API (``connect``, ``disconnect``, ``publish``,
    ``subscribe``, async context manager) over broadcaster's backends, without its
    subscribe/unsubscribe races and with a supervised listener. It does not subclass
    ``Broadcast``, so it depends on none of its private state."""

    def __init__(
        self,
        url: str | None = None,
        *,
        backend: BroadcastBackend | None = None,
        listener_retry_delay: float = 0.1,
        listener_max_retry_delay: float = 5.0,
    ) -> None:
        if backend is None:
            if not url:
                raise ValueError("SafeBroadcast needs a url or a backend")
            backend = _backend_for_url(url)
        self._backend = backend
        self._subscribers: dict[str, set[asyncio.Queue[Event | None]]] = {}
        self._retry_delay = listener_retry_delay
        self._max_retry_delay = listener_max_retry_delay
        self._channel_states: dict[str, _ChannelState] = {}
        self._backend_channels: set[str] = set()
        self._listen_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.disconnect()

    async def publish(self, channel: str, message: Any) -> None:
        await self._backend.publish(channel, message)

    async def connect(self) -> None:
        if self._listen_task is not None:
            raise RuntimeError("SafeBroadcast is already connected")
        await self._backend.connect()
        self._listen_task = asyncio.create_task(self._listener(), name="broadcast-listener")

    async def disconnect(self) -> None:
        """End all subscribers, stop the listener and disconnect the backend."""
        task, self._listen_task = self._listen_task, None
        if task is not None:
            await _cancel_and_wait(task)
            if not task.cancelled() and task.exception() is not None:
                logger.error("Broadcast listener had failed", exc_info=task.exception())
        subscribers, self._subscribers = self._subscribers, {}
        self._backend_channels.clear()
        for queues in subscribers.values():
            for queue in queues:
                queue.put_nowait(None)
        try:
            await self._backend.disconnect()
        except Exception:
            logger.exception("Error while disconnecting the broadcast backend")

    async def ping(self) -> None:
        """Raise unless connected and the backend is reachable."""
        if self._listen_task is None or self._listen_task.done():
            raise RuntimeError("SafeBroadcast is not connected")
        backend_ping = getattr(self._backend, "ping", None)
        if backend_ping is not None:
            await backend_ping()

    async def _listener(self) -> None:
        delay = self._retry_delay
        while True:
            try:
                event = await self._backend.next_published()
            except Exception:
                logger.exception(
                    "Broadcast backend failed while reading events; retrying in %.2fs", delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_retry_delay)
                # Events may have been lost: tell every subscriber to catch up.
                for channel in list(self._subscribers):
                    self._deliver(Event(channel, RESYNC))
                continue
            delay = self._retry_delay
            self._deliver(event)

    def _deliver(self, event: Event) -> None:
        for queue in tuple(self._subscribers.get(event.channel, ())):
            queue.put_nowait(event)

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscriber]:
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        # Register before awaiting anything, so concurrent subscribers cannot overwrite us.
        self._subscribers.setdefault(channel, set()).add(queue)
        try:
            await self._sync_channel(channel)
            yield Subscriber(queue)
        finally:
            queues = self._subscribers.get(channel)
            if queues is not None:
                queues.discard(queue)
                if not queues:
                    del self._subscribers[channel]
            queue.put_nowait(None)
            try:
                await self._sync_channel(channel)
            except Exception:
                logger.exception("Failed to unsubscribe the backend from %r", channel)

    async def _sync_channel(self, channel: str) -> None:
        """Bring the backend subscription of ``channel`` in line with its subscribers.

        Runs in a shielded task, so a cancelled subscriber cannot leave the backend
        half-way through a subscribe or unsubscribe.
        """
        task = asyncio.create_task(self._reconcile(channel))
        self._background.add(task)
        task.add_done_callback(self._background_done)
        await asyncio.shield(task)

    def _background_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.debug("Channel sync failed", exc_info=task.exception())

    async def _reconcile(self, channel: str) -> None:
        state = self._channel_states.get(channel)
        if state is None:
            state = self._channel_states[channel] = _ChannelState()
        state.users += 1
        try:
            async with state.lock:
                while True:
                    wanted = bool(self._subscribers.get(channel))
                    if wanted == (channel in self._backend_channels):
                        return
                    if wanted:
                        await self._backend.subscribe(channel)
                        self._backend_channels.add(channel)
                    else:
                        await self._backend.unsubscribe(channel)
                        self._backend_channels.discard(channel)
        finally:
            state.users -= 1
            if (
                state.users == 0
                and channel not in self._backend_channels
                and not self._subscribers.get(channel)
            ):
                self._channel_states.pop(channel, None)


def _backend_for_url(url: str, *, start_when_unreachable: bool = False) -> BroadcastBackend:
    scheme = urlparse(url).scheme
    if scheme == "memory":
        return MemoryBackend(url)
    if scheme in ("redis", "rediss"):
        return RedisPubSubBackend(url, start_when_unreachable=start_when_unreachable)
    # Do not echo the URL: it may carry a password.
    raise ValueError(
        f"Unsupported broadcast URL scheme {scheme!r}: use memory://, redis:// or rediss://"
    )


def create_broadcast(url: str, *, start_when_unreachable: bool = False) -> SafeBroadcast:
    """Build the broadcast for ``url``: ``memory://``, ``redis://`` or ``rediss://``.

    With ``start_when_unreachable``, ``connect()`` succeeds while Redis is down and the
    backend connects in the background (then delivers ``RESYNC``), as the service wants:
    mutations commit to the outbox whether or not Redis is up.
    """
    return SafeBroadcast(
        backend=_backend_for_url(url, start_when_unreachable=start_when_unreachable)
    )
