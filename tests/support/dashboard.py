"""A live dashboard as its users open one: several subscriptions per organisation, of different
fields and filters, each on its own socket or several on one, over graphql-transport-ws and the
legacy graphql-ws, every frame timestamped as it is parsed off its socket.

After a flow, ``Dashboard.verify`` compares what each subscription received with what it should
have received, read from the outbox (every numbered event visible to its organisation after the
subscription started, through the subscription's own filter): the same events, once each, in
order. It also measures each delivery from the event's commit (``created_at``, stamped in the
committing transaction on this machine's clock) to the frame's arrival, by source: an event with
an acting user was made by a request, one without by background work (the warehouse worker,
warehouse callbacks, the store inbox, the tracking pusher, reconciliation).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.frames import DATA_OPCODES, Frame

from bench.common import percentile
from domain.events import PublishedEvent
from domain.events import queries as event_queries
from tests.conftest import Member
from tests.support.events import seq_of
from tests.support.pauses import Pauses

Predicate = Callable[[PublishedEvent], bool]


def of_type(*types: str) -> Predicate:
    return lambda e: e.type in types


def status_change(*statuses: str) -> Predicate:
    return lambda e: (
        e.type == "ORDER_STATUS_CHANGED" and (not statuses or e.payload.get("to") in statuses)
    )


def withdrawal_of(*order_ids: str) -> Predicate:
    return lambda e: (
        e.type == "WITHDRAWAL_STATUS_CHANGED"
        and (not order_ids or e.payload.get("orderId") in order_ids)
    )


@dataclass(frozen=True)
class Panel:
    """One subscription of the dashboard: who holds it, on which socket, and which events of
    its organisation it must deliver (``wants``)."""

    name: str
    member: Member
    socket: str
    query: str
    wants: Predicate
    variables: dict[str, Any] = field(default_factory=dict)
    legacy: bool = False  # graphql-ws (subscriptions-transport-ws) instead of transport-ws


class _Stamped(ClientConnection):
    """A client connection that notes when each message's last frame is parsed off the socket
    (in order), so that a client reading several sockets does not count its own turns."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stamps: collections.deque[float] = collections.deque()

    def process_event(self, event: Any) -> None:  # websockets' per-frame hook
        if isinstance(event, Frame) and event.opcode in DATA_OPCODES and event.fin:
            self.stamps.append(time.time())
        super().process_event(event)


@dataclass
class Arrival:
    seq: int
    at: float  # wall clock, seconds


class _Socket:
    """One WebSocket: its panels by operation id and what arrived, timestamped."""

    def __init__(self, ws: _Stamped, legacy: bool) -> None:
        self.ws = ws
        self.legacy = legacy
        self.panels: dict[str, Panel] = {}
        self.arrivals: dict[str, list[Arrival]] = {}
        self.problems: list[str] = []
        self._ids = itertools.count(1)
        self.reader: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, url: str, member: Member, *, legacy: bool) -> _Socket:
        protocol = "graphql-ws" if legacy else "graphql-transport-ws"
        ws = await websockets.connect(
            url, subprotocols=[protocol], compression=None, create_connection=_Stamped
        )
        socket = cls(ws, legacy)
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {member.token}"}}
        await ws.send(json.dumps(init))
        while True:  # graphql-ws may send keep-alives around the acknowledgement
            ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
            ws.stamps.popleft()
            if ack["type"] == "connection_ack":
                break
            assert ack["type"] == "ka", ack
        socket.reader = asyncio.create_task(socket._read())
        return socket

    async def subscribe(self, panel: Panel) -> None:
        op_id = str(next(self._ids))
        self.panels[op_id] = panel
        self.arrivals[panel.name] = []
        kind = "start" if self.legacy else "subscribe"
        payload = {"query": panel.query, "variables": panel.variables}
        await self.ws.send(json.dumps({"id": op_id, "type": kind, "payload": payload}))

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                at = self.ws.stamps.popleft()
                message = json.loads(raw)
                kind = message.get("type")
                if kind in ("ka", "pong"):
                    continue
                if kind == "ping":
                    await self.ws.send('{"type":"pong"}')
                    continue
                panel = self.panels.get(message.get("id", ""))
                if panel is None or kind not in ("next", "data"):
                    self.problems.append(f"unexpected frame {message}")
                    continue
                payload = message["payload"]
                if payload.get("errors"):
                    self.problems.append(f"{panel.name}: errors {payload['errors']}")
                    continue
                value = next(iter(payload["data"].values()))
                seq = seq_of(value.get("eventId") or value["id"])
                self.arrivals[panel.name].append(Arrival(seq, at))

    async def close(self) -> None:
        await self.ws.close()
        if self.reader is not None:
            await self.reader


@dataclass
class Delivery:
    panel: str
    seq: int
    type: str
    source: str  # "request" or "worker"
    latency_ms: float


@dataclass
class Report:
    """What ``verify`` found: every delivery, and everything wrong."""

    deliveries: list[Delivery]
    problems: list[str]

    def latencies(self, source: str | None = None) -> list[float]:
        return sorted(d.latency_ms for d in self.deliveries if source is None or d.source == source)

    def summary(self) -> str:
        lines = []
        for source in ("request", "worker", None):
            values = self.latencies(source)
            if not values:
                continue
            lines.append(
                f"{source or 'all':>8}: {len(values):4} deliveries, p50 "
                f"{percentile(values, 50):7.1f} ms, p99 {percentile(values, 99):7.1f} ms, "
                f"max {values[-1]:7.1f} ms"
            )
        slowest = sorted(self.deliveries, key=lambda d: -d.latency_ms)[:3]
        lines.append(
            "slowest: "
            + "; ".join(f"{d.panel} {d.type} ({d.source}) {d.latency_ms:.1f} ms" for d in slowest)
        )
        return "\n".join(lines)


class Dashboard:
    """Panels opened on servers (``url_for`` picks the WebSocket URL of a panel's socket)."""

    def __init__(self) -> None:
        self.sockets: dict[str, _Socket] = {}
        self.starts: dict[str, int] = {}  # panel name → last seq before it listened

    async def open(self, panels: Iterable[Panel], url_for: Callable[[Panel], str]) -> None:
        for panel in panels:
            socket = self.sockets.get(panel.socket)
            if socket is None:
                socket = await _Socket.open(url_for(panel), panel.member, legacy=panel.legacy)
                self.sockets[panel.socket] = socket
            assert socket.legacy == panel.legacy, f"{panel.name}: one protocol per socket"
            await socket.subscribe(panel)

    def started(self, names: Iterable[str], seq: int) -> None:
        """Mark panels as listening from after event ``seq`` on."""
        for name in names:
            self.starts[name] = seq

    @property
    def panels(self) -> list[Panel]:
        return [p for s in self.sockets.values() for p in s.panels.values()]

    async def verify(self, *, bound_ms: float, pauses: Pauses | None = None) -> Report:
        """Compare every panel's arrivals with the outbox, and time each delivery; a late one
        says whether ``pauses`` (of this process) saw it paused meanwhile."""
        deliveries: list[Delivery] = []
        problems: list[str] = []
        visible: dict[tuple[int, int], list[PublishedEvent]] = {}
        for socket in self.sockets.values():
            problems += socket.problems
            for panel in socket.panels.values():
                start = self.starts[panel.name]
                key = (panel.member.organisation_id, start)
                if key not in visible:
                    visible[key] = await event_queries.events_for_organisation(
                        panel.member.organisation_id, after_seq=start, limit=100_000
                    )
                events = {e.seq: e for e in visible[key]}
                expected = [e.seq for e in visible[key] if panel.wants(e)]
                # the panel listened from before ``start``: what came earlier is not counted
                arrived = [a for a in socket.arrivals[panel.name] if a.seq > start]
                got = [a.seq for a in arrived]
                if got != expected:
                    problems.append(
                        f"{panel.name}: received {got}, expected {expected} "
                        f"(missing {sorted(set(expected) - set(got))}, "
                        f"extra {sorted(set(got) - set(expected))})"
                    )
                for arrival in arrived:
                    event = events.get(arrival.seq)
                    if event is None:
                        continue
                    latency = (arrival.at - event.created_at.timestamp()) * 1000
                    source = "request" if event.actor_user_id is not None else "worker"
                    deliveries.append(Delivery(panel.name, event.seq, event.type, source, latency))
                    if latency > bound_ms:
                        problems.append(
                            f"{panel.name}: event {event.seq} {event.type} ({source}) arrived "
                            f"{latency:.0f} ms after its commit (bound {bound_ms:.0f} ms)"
                            + (
                                f"; {pauses.describe(event.created_at.timestamp(), arrival.at)}"
                                if pauses is not None
                                else ""
                            )
                        )
        return Report(deliveries, problems)

    async def close(self) -> None:
        for socket in self.sockets.values():
            with contextlib.suppress(Exception):
                await socket.close()
