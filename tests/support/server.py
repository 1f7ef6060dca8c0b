"""A real uvicorn server running the app in the test's event loop, on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.types import ASGIApp

from service.app import create_app
from service.local_ports import free_port as free_port
from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass
class RunningServer:
    app: Starlette
    settings: Settings
    port: int
    server: uvicorn.Server
    task: asyncio.Task[Any]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    async def store_inbox_drained(self, timeout: float = 10) -> None:
        """Wait until every accepted store webhook has been taken in (none left PENDING)."""
        from domain.stores import inbox as store_inbox

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (pending := await store_inbox.pending_count()) > 0:
            if loop.time() > deadline:
                raise TimeoutError(f"{pending} store webhooks still pending")
            await asyncio.sleep(0.01)

    async def sla_settled(self, timeout: float = 10) -> None:
        """Wait until every event recorded so far has reached this server and its SLA worker
        has settled them: a test that then changes a subject behind the worker's back and
        settles or sweeps itself is not overtaken by a round the worker had due."""
        from domain.events import outbox
        from domain.events.models import Event

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout

        async def dispatched() -> bool:
            if await Event.filter(seq__isnull=True).exists():
                return False  # recorded, not yet numbered
            return bool(self.app.state.hub.last_seq >= await outbox.last_seq())

        while not (await dispatched() and self.app.state.sla.settled):
            if loop.time() > deadline:
                raise TimeoutError("the SLA worker did not settle what it heard")
            await asyncio.sleep(0.01)

    async def wait_for_subscribers(self, count: int, timeout: float = 10) -> None:
        """Wait until ``count`` subscriptions receive events (no race with a mutation)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.app.state.live.listening_subscriptions < count:
            if loop.time() > deadline:
                raise TimeoutError(
                    f"{self.app.state.live.listening_subscriptions} subscribers, not {count}"
                )
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self.server.should_exit = True
        await asyncio.wait_for(self.task, 20)


async def start_server(
    settings: Settings,
    *,
    port: int | None = None,
    make_app: Callable[[Settings], Starlette] = create_app,
) -> RunningServer:
    """Serve the app with ``settings`` on a free port, or on ``port`` (a server restarted where
    its clients reconnect to); ``make_app`` builds it (``create_app``, or one with arguments of
    its own, as a tracer provider)."""
    port = port or free_port()
    if not settings.public_url:
        settings = settings.model_copy(update={"public_url": f"http://127.0.0.1:{port}"})
    app = make_app(settings)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        lifespan="on",
        ws_max_size=settings.max_body_bytes,
        server_header=False,  # as main.py serve
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server stopped during start-up")
        await asyncio.sleep(0.01)
    return RunningServer(app=app, settings=settings, port=port, server=server, task=task)


@asynccontextmanager
async def serve(app: ASGIApp) -> AsyncIterator[str]:
    """Run ``app`` with uvicorn in this event loop; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        lifespan="off",
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("server stopped during start-up")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


class CountingTransport(httpx.AsyncBaseTransport):
    """Delegates to ``inner`` (the real network by default) and records every request."""

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.inner = inner or httpx.AsyncHTTPTransport()
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


# Clients of the servers tests start drop idle connections before uvicorn's 5 s keep-alive
# ends them: a request that reuses a connection the server is closing at that moment fails
# with ReadError / "Server disconnected".
IDLE_SAFE = httpx.Limits(keepalive_expiry=2)


def _log_file(log: Path | None) -> IO[bytes]:
    """Where a server process writes its log: ``log``, or a temporary file."""
    return open(log, "wb") if log is not None else tempfile.TemporaryFile()


@asynccontextmanager
async def app_process(env: dict[str, str], *, log: Path | None = None) -> AsyncIterator[str]:
    """``python main.py serve`` in a process of its own, as deployed (GC tuning, uvicorn's
    defaults), with ``env`` over this process's environment and a free ``PORT``; yields its
    URL once ``/readyz`` answers, and stops it afterwards.

    Its log (stderr) goes to ``log``, a temporary file by default, never to a pipe: nobody
    reads a pipe while the server runs, and once it has logged a pipe's worth (64 KiB: late in
    a run, warnings about the long-gone warehouses of earlier tests, which every instance
    reconciles) the server would block in its next write and stop answering."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with _log_file(log) as output:
        process = subprocess.Popen(
            [sys.executable, "main.py", "serve"],
            cwd=ROOT,
            env={**os.environ, "LOG_FORMAT": "text", "PUBLIC_URL": url, **env, "PORT": str(port)},
            stdout=subprocess.DEVNULL,
            stderr=output,
        )
        try:
            deadline = time.monotonic() + 60
            async with httpx.AsyncClient() as http:
                while True:
                    with contextlib.suppress(httpx.TransportError):
                        if (await http.get(f"{url}/readyz")).status_code == 200:
                            break
                    if process.poll() is not None or time.monotonic() > deadline:
                        process.kill()
                        process.wait()
                        size = os.fstat(output.fileno()).st_size
                        tail = os.pread(output.fileno(), 8000, max(0, size - 8000))
                        raise RuntimeError(f"main.py serve did not start: {tail!r}")
                    await asyncio.sleep(0.2)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
