"""graphql-transport-ws subscribers for the benchmarks, noting when every result arrived
(``time.time()`` as the frame is read, comparable with timestamps taken on the same machine).

- ``Subscriber`` (``bench/scale_out.py``): a few hundred connections in this process, made with
  ``websockets`` without compression and without client pings (the library answers the
  server's pings); each keeps its results, parsed.
- ``TenantClients`` (``bench/live_tenants.py``): thousands of sockets in worker processes
  (``python bench/ws_clients.py worker MARKER``), each ``TenantSocket`` a minimal RFC 6455
  client that notes only the integer key of each result and when it came, cheap enough to read
  tens of thousands of frames a second on a shared core (see the section below).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import sys
import time
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import urlparse

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


# --------------------------------------------------------------------------- many cheap sockets
#
# ``live_tenants`` keeps 10,000 sockets open and reads 10,000 to 50,000 frames a second on the
# core it shares with the load generator, so the clients must cost far less than the servers
# they measure. ``TenantSocket`` speaks just what a subscriber needs of RFC 6455 (unmasked
# frames from the server, masked ones to it, ping/pong, close) and finds the event's key in the
# frame's bytes without parsing its JSON: 1.3 us of Python per frame in a loop; the rest is the
# socket's read and the event loop, 13-16 us per frame in all on the bench machine while the
# floor sent 40,000 frames a second (``live_subscribers`` measured 17-23 us for websockets'
# Sans-I/O protocol with ``json.loads``). Frames are checked all the same: a ``next`` without
# the key, any message but ``connection_ack``, ``ping`` and ``pong``, a masked or reserved-bit
# frame, and a key not above the socket's previous one (a duplicate or an event out of order)
# are counted and reported.

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
NEXT = b'"type":"next"'
OPENING_AT_ONCE = 64  # handshakes in flight per worker process
SOCKET_OPEN_TIMEOUT = 60.0
SOCKET_CLOSE_TIMEOUT = 5.0
SOCKETS_PER_WORKER = 5_000
WORKER_SCRIPT = Path(__file__).resolve()


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final frame from a client: masked, as RFC 6455 requires of clients."""
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, 0x80 | size))
    elif size < 65_536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
    mask = os.urandom(4)
    if not size:
        return head + mask
    keystream = (mask * (size // 4 + 1))[:size]
    masked = int.from_bytes(payload, "big") ^ int.from_bytes(keystream, "big")
    return head + mask + masked.to_bytes(size, "big")


class TenantSocket(asyncio.Protocol):
    """One subscriber: the opening handshake, ``connection_init``, one ``subscribe`` once
    acknowledged, then every ``next`` frame's key (the integer after ``owner.marker``) noted
    with the time its bytes were read (``time.time()``, once per read)."""

    def __init__(
        self, owner: Receipts, host: str, port: int, init: bytes, subscribe: bytes, group: int
    ) -> None:
        loop = asyncio.get_running_loop()
        self.owner, self.group = owner, group
        self.host, self.port = host, port
        self.init, self.subscribe = init, subscribe
        self.key = base64.b64encode(os.urandom(16))
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = loop.create_future()
        self.gone: asyncio.Future[None] = loop.create_future()
        self.upgraded = False
        self.closing = False
        self.buffer = b""
        self.fragments: list[bytes] = []
        self.last = -1  # the last key received

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        request = (
            f"GET /graphql HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {self.key.decode()}\r\n"
            f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {PROTOCOL}\r\n\r\n"
        )
        self.transport.write(request.encode())

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buf = self.buffer + data if self.buffer else data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buf
                return
            self._upgrade(buf[: end + 4])
            if not self.upgraded:
                return
            buf = buf[end + 4 :]
        size, at = len(buf), 0
        while size - at >= 2:
            first, second = buf[at], buf[at + 1]
            length, head = second & 0x7F, 2
            if length == 126:
                if size - at < 4:
                    break
                length, head = int.from_bytes(buf[at + 2 : at + 4], "big"), 4
            elif length == 127:
                if size - at < 10:
                    break
                length, head = int.from_bytes(buf[at + 2 : at + 10], "big"), 10
            end = at + head + length
            if end > size:
                break
            payload = buf[at + head : end]
            at = end
            if second & 0x80 or first & 0x70:
                self._fail("a masked frame or reserved bits from the server")
                return
            opcode = first & 0x0F
            if opcode == 1 and first & 0x80:
                self._text(payload, now)
            elif opcode in (0, 1):  # a fragmented message
                self.fragments.append(payload)
                if first & 0x80:
                    message, self.fragments = b"".join(self.fragments), []
                    self._text(message, now)
            elif opcode == 9:
                self._write(client_frame(10, payload))
            elif opcode == 8:
                if not self.closing:
                    self.closing = True
                    self._write(client_frame(8, payload[:2]))
                assert self.transport is not None
                self.transport.close()
                return
            elif opcode != 10:
                self._fail(f"unexpected opcode {opcode}")
                return
        self.buffer = buf[at:] if at < size else b""

    def _upgrade(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:] if line)
        }
        accept = base64.b64encode(hashlib.sha1(self.key + GUID).digest()).decode()
        if not lines[0].startswith("HTTP/1.1 101"):
            self._fail(f"handshake: {lines[0]}")
        elif headers.get("sec-websocket-accept") != accept:
            self._fail("handshake: wrong Sec-WebSocket-Accept")
        elif headers.get("sec-websocket-protocol") != PROTOCOL:
            self._fail(f"subprotocol {headers.get('sec-websocket-protocol')!r} chosen")
        else:
            self.upgraded = True
            self._write(client_frame(1, self.init))

    def _text(self, message: bytes, now: float) -> None:
        owner = self.owner
        if message.find(NEXT, 0, 48) >= 0:
            start = message.find(owner.marker)
            if start >= 0:
                start += len(owner.marker)
                key = int(message[start : message.index(b'"', start)])
                if key <= self.last:
                    owner.disorder += 1
                self.last = key
                owner.keys.append(key)
                owner.times.append(now)
                return
        parsed = json.loads(message)
        kind = parsed.get("type")
        if kind == "connection_ack":
            self._write(client_frame(1, self.subscribe))
            if not self.ready.done():
                self.ready.set_result(None)
        elif kind == "ping":
            self._write(client_frame(1, b'{"type":"pong"}'))
        elif kind != "pong":
            owner.unexpected += 1
            owner.note(f"{kind}: {message[:300]!r}")

    def _write(self, frame: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame)

    def _fail(self, problem: str) -> None:
        self.owner.note(problem)
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(problem))
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"connection lost: {exc}"))
        if not self.gone.done():
            self.gone.set_result(None)
        self.owner.lost(self)

    async def close(self) -> None:
        """A clean close (1000), or an abort if the server does not answer in time."""
        if self.transport is None or self.gone.done():
            return
        if not self.closing:
            self.closing = True
            self._write(client_frame(8, (1000).to_bytes(2, "big")))
        try:
            await asyncio.wait_for(asyncio.shield(self.gone), SOCKET_CLOSE_TIMEOUT)
        except TimeoutError:
            self.transport.abort()


class Receipts:
    """One worker process's sockets and the keys they received since the last report."""

    def __init__(self, marker: bytes) -> None:
        self.marker = marker
        self.sockets: set[TenantSocket] = set()
        self.keys = array("q")
        self.times = array("d")
        self.disorder = 0  # keys not above the socket's previous one
        self.unexpected = 0  # messages other than next, connection_ack, ping, pong
        self.failed = 0
        self.dropped = 0
        self.errors: list[str] = []
        self.closing = False

    def note(self, problem: str) -> None:
        if len(self.errors) < 5:
            self.errors.append(problem[:300])

    def lost(self, socket: TenantSocket) -> None:
        if socket in self.sockets:
            self.sockets.discard(socket)
            if not self.closing:
                self.dropped += 1
                self.note("a socket was closed by the server")

    async def open(self, url: str, sockets: list[list[Any]]) -> dict[str, Any]:
        """Open and subscribe ``sockets`` (``[token, query, group]`` each), at most
        ``OPENING_AT_ONCE`` handshakes at a time; the sockets opened, by group."""
        loop = asyncio.get_running_loop()
        host, port = _host_port(url)
        gate = asyncio.Semaphore(OPENING_AT_ONCE)
        opened: Counter[int] = Counter()
        failed_before = self.failed

        async def one(token: str, query: str, group: int) -> None:
            init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
            subscribe = {"id": "1", "type": "subscribe", "payload": {"query": query}}
            async with gate:
                socket: TenantSocket | None = None
                try:
                    async with asyncio.timeout(SOCKET_OPEN_TIMEOUT):
                        _, socket = await loop.create_connection(
                            lambda: TenantSocket(
                                self,
                                host,
                                port,
                                json.dumps(init).encode(),
                                json.dumps(subscribe).encode(),
                                group,
                            ),
                            host,
                            port,
                        )
                        await socket.ready
                except Exception as exc:
                    self.failed += 1
                    self.note(f"opening: {type(exc).__name__}: {exc}")
                    if socket is not None and socket.transport is not None:
                        socket.transport.abort()
                    return
            self.sockets.add(socket)
            opened[group] += 1

        started = time.perf_counter()
        await asyncio.gather(*(one(*spec) for spec in sockets))
        return {
            "opened": {str(g): n for g, n in opened.items()},
            "failed": self.failed - failed_before,
            "seconds": time.perf_counter() - started,
            "errors": self.errors,
        }

    def report(self) -> dict[str, Any]:
        """What arrived since the last report (keys and times as base64 of their machine
        arrays: 100,000 receipts cost milliseconds, not the JSON of 200,000 numbers), then
        forgotten."""
        keys, times = self.keys, self.times
        self.keys, self.times = array("q"), array("d")
        return {
            "keys": base64.b64encode(keys.tobytes()).decode(),
            "times": base64.b64encode(times.tobytes()).decode(),
            "disorder": self.disorder,
            "unexpected": self.unexpected,
            "dropped": self.dropped,
            "errors": self.errors,
        }

    async def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        kind = command["cmd"]
        if kind == "open":
            return await self.open(command["url"], command["sockets"])
        if kind == "count":
            return {"received": len(self.keys), "open": len(self.sockets)}
        if kind == "cpu":
            return {"cpu": time.process_time()}
        if kind == "report":
            return self.report()
        if kind == "close":
            self.closing = True
            sockets, self.sockets = list(self.sockets), set()
            await asyncio.gather(*(s.close() for s in sockets))
            self.closing = False
            return {"closed": len(sockets)}
        return {}


def _host_port(url: str) -> tuple[str, int]:
    parsed = urlparse(url)
    return parsed.hostname or "127.0.0.1", parsed.port or 80


async def worker_main(marker: str) -> None:
    """A client worker: one JSON line on stdout per command line on stdin, until ``exit``."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    receipts = Receipts(marker.encode())
    while line := await reader.readline():
        command = json.loads(line)
        answer = await receipts.handle(command)
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
        if command["cmd"] == "exit":
            return


@dataclass
class Received:
    """What the workers received since the last report."""

    keys: array[int]
    times: array[float]
    disorder: int
    unexpected: int
    dropped: int
    errors: list[str]


class TenantClients:
    """Worker processes (``python bench/ws_clients.py worker MARKER``) holding the sockets,
    commanded together over stdin/stdout; a socket's frames carry an integer key after
    ``MARKER`` (``/Order/`` for ``orderStatusChanged { orderId }``)."""

    def __init__(self, processes: list[asyncio.subprocess.Process]) -> None:
        self.processes = processes

    @classmethod
    async def start(cls, workers: int, marker: str, log: IO[bytes]) -> TenantClients:
        root = WORKER_SCRIPT.parent.parent
        processes = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                str(WORKER_SCRIPT),
                "worker",
                marker,
                cwd=root,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                limit=2**28,
            )
            for _ in range(workers)
        ]
        return cls(processes)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    async def _ask(self, process: asyncio.subprocess.Process, command: dict[str, Any]) -> Any:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write((json.dumps(command) + "\n").encode())
        await process.stdin.drain()
        line = await process.stdout.readline()
        if not line:
            raise RuntimeError(f"a client worker exited ({process.returncode}); see its log")
        return json.loads(line)

    async def ask(self, command: dict[str, Any]) -> list[Any]:
        return list(await asyncio.gather(*(self._ask(p, command) for p in self.processes)))

    async def open(
        self, url: str, sockets: Sequence[tuple[str, str, int]]
    ) -> tuple[Counter[int], list[str]]:
        """Open ``sockets`` (token, document, group), dealt round-robin to the workers; the
        sockets open by group, and the first errors."""
        shares: list[list[tuple[str, str, int]]] = [[] for _ in self.processes]
        for i, spec in enumerate(sockets):
            shares[i % len(shares)].append(spec)
        answers = await asyncio.gather(
            *(
                self._ask(p, {"cmd": "open", "url": url, "sockets": share})
                for p, share in zip(self.processes, shares, strict=True)
            )
        )
        opened: Counter[int] = Counter()
        for answer in answers:
            opened.update({int(g): n for g, n in answer["opened"].items()})
        return opened, [e for a in answers for e in a["errors"]]

    async def count(self) -> tuple[int, int]:
        """(frames received since the last report, sockets open)."""
        answers = await self.ask({"cmd": "count"})
        return sum(a["received"] for a in answers), sum(a["open"] for a in answers)

    async def cpu(self) -> float:
        """CPU seconds the workers have used (user + system)."""
        return sum(a["cpu"] for a in await self.ask({"cmd": "cpu"}))

    async def report(self) -> Received:
        answers = await self.ask({"cmd": "report"})
        keys, times = array("q"), array("d")
        for answer in answers:
            keys.frombytes(base64.b64decode(answer["keys"]))
            times.frombytes(base64.b64decode(answer["times"]))
        return Received(
            keys=keys,
            times=times,
            disorder=sum(a["disorder"] for a in answers),
            unexpected=sum(a["unexpected"] for a in answers),
            dropped=sum(a["dropped"] for a in answers),
            errors=[e for a in answers for e in a["errors"]],
        )

    async def close(self) -> int:
        """Close every socket; how many were open."""
        return sum(a["closed"] for a in await self.ask({"cmd": "close"}))

    async def stop(self) -> None:
        for process in self.processes:
            if process.returncode is None and process.stdin is not None:
                with contextlib.suppress(Exception):
                    process.stdin.write(b'{"cmd": "exit"}\n')
                    process.stdin.close()
        for process in self.processes:
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()


def worker_count(sockets: int) -> int:
    """Client processes for ``sockets`` (``BENCH_TENANT_WORKERS`` fixes it)."""
    fixed = os.environ.get("BENCH_TENANT_WORKERS")
    return int(fixed) if fixed else max(1, -(-sockets // SOCKETS_PER_WORKER))


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    try:
        import uvloop
    except ImportError:
        asyncio.run(worker_main(sys.argv[2]))
    else:
        uvloop.run(worker_main(sys.argv[2]))
