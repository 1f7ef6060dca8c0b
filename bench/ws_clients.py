"""graphql-transport-ws subscribers for ``bench/scale_out.py``: many connections in this
process, each running one subscription and noting when every result arrived (``time.time()``
as the frame is read, comparable with the server's timestamps on the same machine).

Connections are made with ``websockets`` without compression and without client pings; the
library answers the server's pings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

PROTOCOL = "graphql-transport-ws"
OPEN_TIMEOUT = 15.0


@dataclass(frozen=True, slots=True)
class Arrival:
    at: float  # time.time() when the frame was read
    data: dict[str, Any]


class Subscriber:
    """One connection running one subscription; ``arrivals`` grows as results come in and
    ``error`` says why the stream stopped early (an error, complete or a closed socket)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.arrivals: list[Arrival] = []
        self.error: str | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closing = False

    @classmethod
    async def open(
        cls, url: str, token: str, query: str, variables: dict[str, Any] | None = None
    ) -> Subscriber:
        """Connect, authenticate with ``connection_init`` and subscribe."""
        ws = await websockets.connect(
            url,
            subprotocols=[websockets.Subprotocol(PROTOCOL)],
            compression=None,
            ping_interval=None,
            open_timeout=OPEN_TIMEOUT,
        )
        try:
            init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
            await ws.send(json.dumps(init))
            ack = json.loads(await asyncio.wait_for(ws.recv(), OPEN_TIMEOUT))
            if ack.get("type") != "connection_ack":
                raise RuntimeError(f"no connection_ack: {ack}")
            subscribe = {
                "id": "1",
                "type": "subscribe",
                "payload": {"query": query, "variables": variables or {}},
            }
            await ws.send(json.dumps(subscribe))
        except BaseException:
            await ws.close()
            raise
        subscriber = cls(ws)
        subscriber._reader = asyncio.create_task(subscriber._read())
        return subscriber

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                at = time.time()
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "next":
                    payload = message.get("payload") or {}
                    if payload.get("errors"):
                        self.error = f"errors: {payload['errors']}"
                    else:
                        self.arrivals.append(Arrival(at, payload.get("data") or {}))
                elif kind == "ping":
                    await self.ws.send(json.dumps({"type": "pong"}))
                elif kind in ("error", "complete"):
                    self.error = f"{kind}: {message.get('payload')}"
        except websockets.ConnectionClosed as closed:
            if not self._closing:
                self.error = f"closed: {closed}"

    async def close(self) -> None:
        self._closing = True
        with contextlib.suppress(Exception):
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


async def open_subscribers(
    url: str,
    token: str,
    query: str,
    count: int,
    *,
    variables: dict[str, Any] | None = None,
    concurrency: int = 50,
) -> tuple[list[Subscriber], list[str]]:
    """Open ``count`` subscribers, ``concurrency`` handshakes at a time: (opened, errors)."""
    gate = asyncio.Semaphore(concurrency)

    async def one() -> Subscriber:
        async with gate:
            return await Subscriber.open(url, token, query, variables)

    results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    opened = [r for r in results if isinstance(r, Subscriber)]
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    return opened, errors


async def close_all(subscribers: list[Subscriber]) -> None:
    await asyncio.gather(*(s.close() for s in subscribers))
