"""Clients that speak to a running server the way real ones do: HTTP and graphql-transport-ws."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import httpx
import websockets


class GraphQLHttp:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        # idle connections are dropped before uvicorn's 5 s keep-alive ends them: reusing one
        # the server is closing at that moment fails with "Server disconnected"
        limits = httpx.Limits(keepalive_expiry=2)
        self.http = httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits)

    async def post(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        assert response.status_code == 200, response.text
        return response.json()

    async def data(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> dict[str, Any]:
        """The ``data`` of a response that must have no errors."""
        body = await self.post(query, variables, token=token)
        assert "errors" not in body, body
        return body["data"]

    async def close(self) -> None:
        await self.http.aclose()


class GraphQLWebSocket:
    """One graphql-transport-ws connection."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    @classmethod
    async def connect(
        cls, url: str, *, token: str | None = None, payload: dict[str, Any] | None = None
    ) -> GraphQLWebSocket:
        ws = await websockets.connect(url, subprotocols=["graphql-transport-ws"])
        client = cls(ws)
        init = (
            payload
            if payload is not None
            else ({"Authorization": f"Bearer {token}"} if token else {})
        )
        await client.send({"type": "connection_init", "payload": init})
        return client

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def receive(self, timeout: float = 10) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def acknowledged(self) -> dict[str, Any]:
        message = await self.receive()
        assert message["type"] == "connection_ack", message
        return message

    async def subscribe(self, query: str, variables: dict[str, Any] | None = None) -> str:
        op_id = str(next(self._ids))
        await self.send(
            {
                "id": op_id,
                "type": "subscribe",
                "payload": {"query": query, "variables": variables or {}},
            }
        )
        return op_id

    async def next_data(self, timeout: float = 10) -> dict[str, Any]:
        """The next ``next`` message's data (pings are answered, errors fail the test)."""
        while True:
            message = await self.receive(timeout)
            if message["type"] == "ping":
                await self.send({"type": "pong"})
                continue
            assert message["type"] == "next", message
            assert "errors" not in message["payload"], message
            return message["payload"]["data"]

    async def close(self) -> None:
        await self.ws.close()


EVENTS_SUBSCRIPTION = """
subscription($after: ID, $types: [EventType!]) {
  events(afterEventId: $after, types: $types) { id type subjectType subjectId payload }
}
"""
