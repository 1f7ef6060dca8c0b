"""The floor of the ASGI WebSocket path for ``live_subscribers`` and ``live_tenants``: a
hand-written graphql-transport-ws endpoint (a plain Starlette ``WebSocketRoute`` under uvicorn)
that sends one pre-serialised ``next`` frame per event to the sockets it is for. No GraphQL
execution, no database, no broadcast channel; authentication is a dictionary look-up.

- ``WS /graphql`` (subprotocol ``graphql-transport-ws``): ``connection_init`` is answered with
  ``connection_ack`` (any payload accepted), ``subscribe`` registers the socket under its
  operation id (whatever the document), ``ping`` gets ``pong``, ``complete`` unregisters.
- ``POST /emit`` with ``{"orderId": "gid://supplygraph/Order/<n>"}``: stamps the event with the
  current time (``at``, ISO 8601 with microseconds, the shape supplygraph's
  ``orderStatusChanged.at`` has), serialises the ``next`` frame once per operation id in use (the
  bench uses one id, so once) and sends it to every socket in turn before answering
  ``{"sent": n, "seconds": s}`` (s: the wall time from the stamp to the last send). The payload
  has the fields of supplygraph's ``OrderStatusChange`` the bench subscribes to, with the reason
  the bench's mutations give and ids in supplygraph's global-id form (``eventId``
  ``gid://supplygraph/Event/<key>``, the 22-character key made as supplygraph makes it, one
  AES block per event and organisation (``schema/event_ids.py``); ``orderId`` the posted one),
  so the frames have the same size and the per-event work is the same.
- Tenants (``live_tenants``): ``POST /tenants`` with ``{"<token>": <organisation id>, ...}``
  makes those bearer tokens known; a socket whose ``connection_init`` carries one
  (``{"Authorization": "Bearer <token>"}``) belongs to that organisation and its subscriptions
  are kept under it, not with the sockets above. ``POST /emit_tenants`` with
  ``{"events": [[<organisation id>, <key>], ...]}``: per event, in order, one frame for that
  organisation (serialised once per operation id, its ``eventId`` the organisation's, its
  ``orderId`` ``gid://supplygraph/Order/<key>``, reason ``live_tenants``) sent to that
  organisation's sockets only; the answer is as ``/emit``'s. The routing supplygraph does
  (audience = organisation, one result per organisation and document), by hand.
- ``GET /stats``: ``{"subscribers": n}`` (every socket's subscriptions); ``GET /healthz``.

    HOST=127.0.0.1 PORT=8200 python bench/ws_floor.py
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import struct
import time
from collections import defaultdict
from datetime import UTC, datetime

import uvicorn
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

PROTOCOL = "graphql-transport-ws"
MAX_MESSAGE_BYTES = 1_048_576  # supplygraph's default MAX_BODY_BYTES, its ws_max_size

# operation id -> sockets subscribed under it (sockets of no known tenant)
subscribers: dict[str, set[WebSocket]] = defaultdict(set)
# bearer token -> organisation id (``POST /tenants``)
tenants: dict[str, int] = {}
# organisation id -> operation id -> its sockets subscribed under it
by_tenant: dict[int, dict[str, set[WebSocket]]] = defaultdict(lambda: defaultdict(set))
event_ids = itertools.count(1)
EVENT_GID = "gid://supplygraph/Event/"  # supplygraph's global ids (schema/global_ids.py)


_EVENT_CIPHER = Cipher(algorithms.AES(os.urandom(16)), modes.ECB())


def _event_key(event_id: int, organisation_id: int = 0) -> str:
    encryptor = _EVENT_CIPHER.encryptor()
    block = encryptor.update(struct.pack(">QQ", organisation_id, event_id)) + encryptor.finalize()
    return base64.urlsafe_b64encode(block).rstrip(b"=").decode()


def _frame(
    operation_id: str, order_id: str, event_id: str, at: str, reason: str = "live_subscribers"
) -> str:
    change = {
        "eventId": f"{EVENT_GID}{event_id}",
        "orderId": order_id,
        "fromStatus": "AWAITING_PAYMENT",
        "toStatus": "CANCELLED",
        "reason": reason,
        "at": at,
    }
    message = {
        "id": operation_id,
        "type": "next",
        "payload": {"data": {"orderStatusChanged": change}},
    }
    return json.dumps(message, separators=(",", ":"))


async def graphql_ws(websocket: WebSocket) -> None:
    """One graphql-transport-ws connection: handshake, then subscriptions until it closes."""
    if PROTOCOL not in websocket.scope.get("subprotocols", []):
        await websocket.close(code=4406)
        return
    await websocket.accept(subprotocol=PROTOCOL)
    mine: set[str] = set()
    acknowledged = False
    registry = subscribers  # this socket's tenant's, once connection_init names one
    try:
        with contextlib.suppress(WebSocketDisconnect):  # the client left
            while True:
                message = json.loads(await websocket.receive_text())
                kind = message.get("type")
                if kind == "connection_init":
                    if acknowledged:
                        await websocket.close(code=4429)
                        return
                    acknowledged = True
                    tenant = tenants.get(_bearer(message.get("payload")))
                    if tenant is not None:
                        registry = by_tenant[tenant]
                    await websocket.send_text('{"type":"connection_ack"}')
                elif kind == "ping":
                    await websocket.send_text('{"type":"pong"}')
                elif kind == "subscribe":
                    if not acknowledged:
                        await websocket.close(code=4401)
                        return
                    operation_id = str(message["id"])
                    mine.add(operation_id)
                    registry[operation_id].add(websocket)
                elif kind == "complete":
                    operation_id = str(message.get("id"))
                    mine.discard(operation_id)
                    registry[operation_id].discard(websocket)
    finally:
        for operation_id in mine:
            registry[operation_id].discard(websocket)


def _bearer(payload: object) -> str:
    """The token of a ``connection_init`` payload's ``Authorization: Bearer <token>``."""
    header = payload.get("Authorization") if isinstance(payload, dict) else None
    return header.removeprefix("Bearer ") if isinstance(header, str) else ""


async def emit(request: Request) -> JSONResponse:
    """One event to every subscribed socket: serialised once per operation id."""
    body = json.loads(await request.body())
    started = time.perf_counter()
    at = datetime.now(UTC).isoformat(timespec="microseconds")
    event_id = _event_key(next(event_ids))
    sent = 0
    for operation_id, sockets in list(subscribers.items()):
        frame = _frame(operation_id, str(body["orderId"]), event_id, at)
        for websocket in list(sockets):
            try:
                await websocket.send_text(frame)
            except Exception:
                sockets.discard(websocket)
            else:
                sent += 1
    return JSONResponse({"sent": sent, "seconds": time.perf_counter() - started})


async def add_tenants(request: Request) -> JSONResponse:
    """Bearer tokens and their organisations, for the sockets that connect next."""
    known = json.loads(await request.body())
    tenants.update({str(token): int(org) for token, org in known.items()})
    return JSONResponse({"tenants": len(tenants)})


async def emit_tenants(request: Request) -> JSONResponse:
    """Events each for one organisation: per event one frame (per operation id) sent to that
    organisation's sockets, in the order given."""
    body = json.loads(await request.body())
    started = time.perf_counter()
    at = datetime.now(UTC).isoformat(timespec="microseconds")
    sent = 0
    for organisation_id, key in body["events"]:
        operations = by_tenant.get(organisation_id)
        if not operations:
            continue
        event_id = _event_key(next(event_ids), organisation_id)
        order_id = f"gid://supplygraph/Order/{key}"
        for operation_id, sockets in list(operations.items()):
            frame = _frame(operation_id, order_id, event_id, at, "live_tenants")
            for websocket in list(sockets):
                try:
                    await websocket.send_text(frame)
                except Exception:
                    sockets.discard(websocket)
                else:
                    sent += 1
    return JSONResponse({"sent": sent, "seconds": time.perf_counter() - started})


async def stats(request: Request) -> JSONResponse:
    tenanted = sum(len(s) for ops in by_tenant.values() for s in ops.values())
    return JSONResponse({"subscribers": sum(len(s) for s in subscribers.values()) + tenanted})


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        WebSocketRoute("/graphql", graphql_ws),
        Route("/emit", emit, methods=["POST"]),
        Route("/tenants", add_tenants, methods=["POST"]),
        Route("/emit_tenants", emit_tenants, methods=["POST"]),
        Route("/stats", stats),
        Route("/healthz", healthz),
    ]
)


if __name__ == "__main__":
    # the uvicorn options of ``python main.py serve`` (service/cli.py) that touch WebSockets
    uvicorn.run(
        app,
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8200")),
        ws_max_size=MAX_MESSAGE_BYTES,
        ws_ping_interval=20,
        ws_ping_timeout=20,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
