"""Shared parts of ``make bench``: result rows, the load generator and server subprocesses.

The load generator speaks HTTP/1.1 over plain asyncio streams (``RawConnection``): one keep-alive
connection per simulated client, each sending its next request when the previous answer is read
(closed loop). httpx (``HttpxConnection``, ``--client httpx``) was measured as the bottleneck:
on one core, 32 httpx clients (or one shared client with 32 connections) reached 170-350 req/s
against the bare Starlette endpoint with the load generator's core saturated, where the raw
client reaches 3,000-6,000 req/s using under half of its core; so the raw client is the default.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from service.local_ports import free_port as free_port  # one chooser for tests and benchmarks

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SERVER_CORE = 0
LOADGEN_CORE = 1
REQUEST_TIMEOUT = 30.0
# Abuse limits off in every server a benchmark starts (unless its environment sets them): a
# load generator is a few tokens (and addresses) sending as fast as the server answers.
UNLIMITED = {"THROTTLE_MAXIMUM_AVAILABLE": "0", "ANONYMOUS_RATE": "0"}
# the bench's stores and warehouse simulators run on this machine (OUTBOUND_ALLOWED_HOSTS)
LOCAL_HOSTS = "127.0.0.1,localhost"


# --------------------------------------------------------------------------- result rows


@dataclass
class Row:
    """One line of the table and of ``latest.json``; ``ratio`` is always value / baseline."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    ratio: float | None = None
    target: str | None = None
    met: bool | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": _round(self.value),
            "unit": self.unit,
            "baseline": _round(self.baseline),
            "ratio": _round(self.ratio),
            "target": self.target,
            "met": self.met,
        }


def _round(value: float | None) -> float | None:
    if value is None or math.isnan(value):
        return None
    return round(value, 3 if abs(value) < 100 else 1)


def compared(
    name: str,
    value: float,
    unit: str,
    baseline: float | None,
    *,
    min_ratio: float | None = None,
    max_ratio: float | None = None,
) -> Row:
    """A row with its ratio to ``baseline``; with a bound, met when the ratio reaches
    ``min_ratio`` or stays within ``max_ratio``."""
    ratio = value / baseline if baseline else None
    if min_ratio is not None:
        target, met = f"ratio >= {min_ratio:g}", ratio is not None and ratio >= min_ratio
    elif max_ratio is not None:
        target, met = f"ratio <= {max_ratio:g}", ratio is not None and ratio <= max_ratio
    else:
        return Row(name, value, unit, baseline, ratio)
    return Row(name, value, unit, baseline, ratio, target=target, met=met)


def at_most(name: str, value: float, unit: str, baseline: float | None, max_ratio: float) -> Row:
    """A row met when value / baseline is at most ``max_ratio``."""
    return compared(name, value, unit, baseline, max_ratio=max_ratio)


def load_rows(name: str, stats: LoadStats, baseline: LoadStats | None) -> list[Row]:
    """The latency rows of a load run (the throughput row, with its target, is the caller's)."""
    return [
        compared(f"{name}.p50", stats.p50_ms, "ms", baseline.p50_ms if baseline else None),
        compared(f"{name}.p99", stats.p99_ms, "ms", baseline.p99_ms if baseline else None),
    ]


def progress(message: str) -> None:
    print(message, flush=True)


# --------------------------------------------------------------------------- HTTP clients


@dataclass(frozen=True, slots=True)
class Req:
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    wire: bytes  # the whole HTTP/1.1 request, for RawClient


def make_req(
    method: str, path: str, headers: dict[str, str], body: bytes = b"", host: str = "127.0.0.1"
) -> Req:
    lines = [f"{method} {path} HTTP/1.1", f"host: {host}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body or method != "GET":
        lines.append(f"content-length: {len(body)}")
    wire = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    return Req(method, path, tuple(headers.items()), body, wire)


class Connection(Protocol):
    async def send(self, req: Req) -> tuple[int, bytes]: ...

    async def close(self) -> None: ...


class RawConnection:
    """One keep-alive HTTP/1.1 connection over asyncio streams (Content-Length or chunked)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def send(self, req: Req) -> tuple[int, bytes]:
        if self.writer is None:
            await self._open()
        assert self.reader is not None and self.writer is not None
        try:
            self.writer.write(req.wire)
            head = await self.reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            lower = head.lower()
            at = lower.find(b"\r\ncontent-length:")
            if at >= 0:
                end = lower.index(b"\r\n", at + 2)
                body = await self.reader.readexactly(int(lower[at + 17 : end]))
            elif b"\r\ntransfer-encoding: chunked" in lower:
                body = await self._chunked()
            else:
                body = b""
            if b"\r\nconnection: close" in lower:
                await self.close()
            return status, body
        except BaseException:
            await self.close()
            raise

    async def _chunked(self) -> bytes:
        assert self.reader is not None
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)

    async def close(self) -> None:
        writer, self.writer, self.reader = self.writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


class HttpxConnection:
    """The same interface over one httpx.AsyncClient connection."""

    def __init__(self, host: str, port: int) -> None:
        import httpx

        self.client = httpx.AsyncClient(
            base_url=f"http://{host}:{port}",
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            timeout=REQUEST_TIMEOUT,
        )

    async def send(self, req: Req) -> tuple[int, bytes]:
        response = await self.client.request(
            req.method, req.path, headers=dict(req.headers), content=req.body or None
        )
        return response.status_code, response.content

    async def close(self) -> None:
        await self.client.aclose()


def connect(kind: str, host: str, port: int) -> Connection:
    return HttpxConnection(host, port) if kind == "httpx" else RawConnection(host, port)


# --------------------------------------------------------------------------- the load loop


class Workload(Protocol):
    """What a benchmark sends, and whether an answer counts as a success."""

    def next_request(self) -> Req: ...

    def observe(self, req: Req, status: int, body: bytes) -> bool: ...


@dataclass
class Repetition:
    rate: float
    p50_ms: float
    p99_ms: float
    ok: int
    errors: int
    samples_ms: list[float]
    window: tuple[float, float] = (0.0, 0.0)  # its perf_counter bounds


@dataclass
class LoadStats:
    """Medians over the repetitions (each figure separately)."""

    rate: float
    p50_ms: float
    p99_ms: float
    errors: int
    repetitions: list[Repetition] = field(default_factory=list)
    samples_ms: list[float] = field(default_factory=list)  # every answer after the warm-up


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, round(q / 100 * len(sorted_values) + 0.5 - 1e-9))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class LoadOptions:
    clients: int = 32
    duration: float = 5.0
    repetitions: int = 3
    warmup: float = 1.0
    client: str = "raw"


async def measure(
    label: str, host: str, port: int, workload: Workload, options: LoadOptions
) -> LoadStats:
    """``options.clients`` connections send requests back to back (closed loop, no pause)
    through a warm-up and then ``options.repetitions`` windows of ``options.duration`` seconds,
    without draining between windows.

    A window's throughput counts every successful request by the share of its lifetime that fell
    in the window (in flight 4 s of which 1 s in the window: 0.25). On a slow endpoint the 32
    answers come in bursts, all at once, so counting arrivals would give 0 or 32 per short
    window; over a long run both counts agree. A window's latencies are those of the requests
    that finished in it (if none did: of those in flight during it). One progress line per
    window, printed once every request that overlaps it has finished.
    """
    clock = time.perf_counter
    finished: list[tuple[float, float, bool]] = []  # (sent, answered, ok)
    failed: list[float] = []  # when a request failed without an answer
    sending: dict[int, float] = {}  # client number -> when its request in flight was sent
    started = clock()
    bounds = [started + options.warmup + i * options.duration for i in range(options.repetitions)]
    windows = [(lo, lo + options.duration) for lo in bounds]
    stop_at = windows[-1][1]
    conns = [connect(options.client, host, port) for _ in range(options.clients)]

    async def client(number: int, conn: Connection) -> None:
        while clock() < stop_at:
            req = workload.next_request()
            t0 = sending[number] = clock()
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    status, body = await conn.send(req)
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                failed.append(clock())
                del sending[number]
                await asyncio.sleep(0.01)  # the connection is reopened by the next send
                continue
            finished.append((t0, clock(), workload.observe(req, status, body)))
            del sending[number]

    def window(lo: float, hi: float) -> Repetition:
        work = 0.0
        ended: list[float] = []
        overlapping: list[float] = []
        errors = sum(1 for t in failed if lo <= t < hi)
        for t0, t1, ok in finished:
            if t1 <= lo or t0 >= hi:
                continue
            if not ok:
                errors += lo <= t1 < hi
                continue
            work += (min(t1, hi) - max(t0, lo)) / (t1 - t0)
            (ended if t1 < hi else overlapping).append((t1 - t0) * 1000.0)
        latencies = sorted(ended or overlapping)
        return Repetition(
            rate=work / (hi - lo),
            p50_ms=percentile(latencies, 50),
            p99_ms=percentile(latencies, 99),
            ok=len(ended),
            errors=errors,
            samples_ms=latencies,
            window=(lo, hi),
        )

    async def settled(moment: float) -> None:
        """Until ``moment`` has passed and no request sent before it is still in flight."""
        await asyncio.sleep(max(0.0, moment - clock()))
        while True:
            if all(t0 >= moment for t0 in sending.values()):
                return
            await asyncio.sleep(0.02)

    async def report() -> list[Repetition]:
        if options.warmup > 0:
            await settled(windows[0][0])
            warm = window(started, windows[0][0])
            progress(
                f"  {label}: warm-up {options.warmup:g} s "
                f"({warm.ok} answered, {warm.errors} errors)"
            )
        reps = []
        for i, (lo, hi) in enumerate(windows):
            await settled(hi)
            rep = window(lo, hi)
            reps.append(rep)
            progress(
                f"  {label}: repetition {i + 1}/{options.repetitions}: {rep.rate:9.1f} req/s  "
                f"p50 {rep.p50_ms:8.2f} ms  p99 {rep.p99_ms:8.2f} ms  "
                f"({rep.ok} answered, {rep.errors} errors)"
            )
        return reps

    try:
        reps, *_ = await asyncio.gather(report(), *(client(n, c) for n, c in enumerate(conns)))
    finally:
        await asyncio.gather(*(c.close() for c in conns))
    return LoadStats(
        rate=statistics.median(r.rate for r in reps),
        p50_ms=statistics.median(r.p50_ms for r in reps),
        p99_ms=statistics.median(r.p99_ms for r in reps),
        errors=sum(r.errors for r in reps),
        repetitions=reps,
        samples_ms=[(t1 - t0) * 1000.0 for t0, t1, ok in finished if ok and t1 >= windows[0][0]],
    )


class FixedRequest:
    """A workload that sends the same request and wants a 200 without ``reject`` in the body."""

    def __init__(self, req: Req, reject: bytes | None = None) -> None:
        self.req, self.reject = req, reject

    def next_request(self) -> Req:
        return self.req

    def observe(self, req: Req, status: int, body: bytes) -> bool:
        return status == 200 and (self.reject is None or self.reject not in body)


# --------------------------------------------------------------------------- processes


def can_pin() -> bool:
    """Whether servers and load generator can have a core each (the machine's cores, not this
    process's affinity, which ``pin_load_generator`` narrows to one)."""
    return shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2


def pin_load_generator() -> str:
    """Put this process (the load generator and seeding) on its own core when there are two."""
    if can_pin() and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {LOADGEN_CORE})
        return f"server on core {SERVER_CORE} (taskset), load generator on core {LOADGEN_CORE}"
    return "no CPU pinning (taskset missing or one core)"


def pinned(command: list[str], core: int | None = SERVER_CORE) -> list[str]:
    """``command`` run on ``core`` (``taskset -c``) when cores can be chosen; as it is with
    ``core=None`` or when they cannot."""
    return ["taskset", "-c", str(core), *command] if core is not None and can_pin() else command


def place(pid: int, core: int) -> bool:
    """Move a running process, every thread of it, to ``core`` (``taskset -a -p``)."""
    if not can_pin():
        return False
    done = subprocess.run(
        ["taskset", "-a", "-p", "-c", str(core), str(pid)], capture_output=True, check=False
    )
    return done.returncode == 0


class ServerProcess:
    """A server run as a subprocess (its output goes to ``log_path``) on ``core`` (the server
    core by default; None: unpinned), ready when ``health_path`` answers 200, stopped with
    SIGINT."""

    def __init__(
        self,
        name: str,
        command: list[str],
        env: dict[str, str],
        log_path: Path,
        *,
        core: int | None = SERVER_CORE,
        health_path: str = "/healthz",
    ):
        self.name, self.command, self.log_path = name, command, log_path
        self.env = {**UNLIMITED, **env}
        self.core, self.health_path = core, health_path
        self.host = env.get("HOST", "127.0.0.1")
        self.port = int(env["PORT"])
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._profiler: subprocess.Popen[bytes] | None = None

    def launch(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            pinned(self.command, self.core),
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=self._log,
        )
        if os.environ.get("BENCH_PROFILE"):
            self._profile()

    def _profile(self) -> None:
        """``BENCH_PROFILE=1``: sample the server with py-spy (``pip install py-spy``) until it
        stops, as collapsed stacks in ``<log>.profile.txt`` (one line per stack and its count)."""
        assert self.process is not None
        out = self.log_path.with_suffix(".profile.txt")
        spy = shutil.which("py-spy", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
        command = [spy or "py-spy", "record", "--pid", str(self.process.pid), "--format", "raw"]
        command += ["--rate", "250", "--nonblocking", "--output", str(out)]
        self._profiler = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        progress(f"{self.name}: profiling into {out}")

    async def start(self, ready_within: float = 60.0) -> ServerProcess:
        """Launch it and wait until ``GET health_path`` answers 200."""
        self.launch()
        assert self.process is not None
        deadline = time.monotonic() + ready_within
        probe = RawConnection(self.host, self.port)
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with {self.process.returncode}; see {self.log_path}"
                    )
                status = 0
                with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                    status, _ = await probe.send(make_req("GET", self.health_path, {}))
                if status == 200:
                    return self
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not answer in {ready_within:g} s")
                await asyncio.sleep(0.1)
        finally:
            await probe.close()

    def stop(self) -> None:
        if self._profiler is not None:
            self._profiler.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._profiler.wait(timeout=30)
            self._profiler = None
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


def allow_local_simulators() -> str:
    """Let this process register and call the simulators on this machine, as the servers it
    starts may (``app_environment``); returns the allowed hosts."""
    from domain import external_addresses

    hosts = os.environ.get("OUTBOUND_ALLOWED_HOSTS", LOCAL_HOSTS)
    external_addresses.configure(external_addresses.AddressPolicy.of(hosts.split(",")))
    return hosts


# --------------------------------------------------------------------------- server CPU


def cpu_ns(pids: Sequence[int]) -> int:
    """Nanoseconds these processes have spent on a CPU: the first field of
    ``/proc/<pid>/task/<tid>/schedstat`` summed over every thread of each pid.

    Why not ``/proc/<pid>/stat``'s utime + stime: those are clock ticks (10 ms), and a quick
    run's phase uses 70-90 ms of server CPU, so a reading was off by up to 15 %. schedstat is the
    scheduler's own runtime, in ns. A thread that ends between two readings takes its time with
    it; the servers' threads (event loop, thread-pool workers) live as long as the process. A
    pid (or thread) that has gone counts 0.
    """
    return schedstat_sum(pids, 0)


def schedstat_sum(pids: Sequence[int], column: int) -> int:
    """One column of ``/proc/<pid>/task/*/schedstat`` summed over every thread of ``pids``
    (0: ns on a CPU; 2: times put on a CPU); a pid or thread that has gone counts 0."""
    total = 0
    for pid in pids:
        try:
            threads = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in threads:
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{pid}/task/{tid}/schedstat").read_text()
                total += int(stat.split()[column])
    return total
