"""The ``main.py serve`` processes the tests start (``tests/support/server.py::app_process``)
keep answering however much they log: their log is not a pipe that fills up while nobody
reads it (a second instance late in a full run logs warnings about the long-gone warehouses
of earlier tests until it blocked writing them, and a request to it timed out)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import websockets

from service.settings import Settings
from tests.support.server import app_process

PIPE_CAPACITY = 64 * 1024  # Linux's default


async def test_a_server_process_that_logs_more_than_a_pipe_holds_keeps_answering(
    database_url: str, base_settings: Settings, tmp_path: Path
) -> None:
    log = tmp_path / "serve.log"
    env = {"DATABASE_URL": database_url, "REDIS_URL": "", "SECRETS_KEY": base_settings.secrets_key}
    async with app_process(env, log=log) as url:
        # each refused handshake logs its Origin header in full: a few KiB of log per request
        origin = "http://" + "x" * 4000 + ".example"
        ws_url = url.replace("http://", "ws://") + "/graphql"
        for _ in range(200):
            if log.stat().st_size > 3 * PIPE_CAPACITY:
                break
            with pytest.raises(websockets.InvalidStatus):
                await asyncio.wait_for(websockets.connect(ws_url, origin=origin), 10)
        assert log.stat().st_size > 3 * PIPE_CAPACITY, "refused origins are no longer logged"
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            answer = await http.post("/graphql", json={"query": "{ __typename }"})
        assert answer.json() == {"data": {"__typename": "Query"}}
