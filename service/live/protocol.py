"""The graphql-transport-ws protocol: client messages checked into typed values, the frames the
server sends, the close codes, and what an operation's document asks for.

Frames are built as JSON text here so that a result serialised once can be wrapped for each
subscriber by string concatenation (see ``next_prefix``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from typing import Any

import orjson
from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLFormattedError,
    GraphQLSyntaxError,
    OperationType,
    get_operation_ast,
    parse,
)
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.types.execution import ExecutionResult

from compat.strawberry import CannotGetOperationTypeError

SUBPROTOCOLS = (GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL)
MAX_CLOSE_REASON_BYTES = 123  # a close frame's payload is at most 125 bytes, 2 of them the code
CACHED_DOCUMENT_CHARS = 8192  # longer documents are parsed each time rather than kept in memory


class CloseCode(IntEnum):
    """Close codes of graphql-transport-ws, plus the standard ones for a server restarting and
    a client left behind (both: reconnect and resume with ``afterEventId``)."""

    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_REQUEST = 4400
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    SUBPROTOCOL_NOT_ACCEPTABLE = 4406
    CONNECTION_INIT_TIMEOUT = 4408
    SUBSCRIBER_ALREADY_EXISTS = 4409
    TOO_MANY_INITIALISATION_REQUESTS = 4429


class ProtocolViolation(Exception):
    """The client broke the protocol: the socket is closed with ``code`` and ``reason``."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ConnectionInit:
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Ping:
    payload: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Pong:
    payload: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Subscribe:
    id: str
    query: str  # empty until resolved when the document is named by an id (``names_a_document``)
    variables: dict[str, Any] | None
    operation_name: str | None
    extensions: dict[str, Any] | None = None
    document_id: str | None = None

    @property
    def names_a_document(self) -> bool:
        """Whether the document is named by an id (a persisted query or document)."""
        return self.document_id is not None or "persistedQuery" in (self.extensions or {})


@dataclass(frozen=True, slots=True)
class Complete:
    id: str


ClientMessage = ConnectionInit | Ping | Pong | Subscribe | Complete

_FAILED_TO_PARSE = "Failed to parse message"


def _optional_dict(value: object, reason: str) -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    raise ProtocolViolation(CloseCode.BAD_REQUEST, reason)


def _operation_id(message: Mapping[str, Any]) -> str:
    op_id = message.get("id")
    if not isinstance(op_id, str) or not op_id:
        raise ProtocolViolation(CloseCode.BAD_REQUEST, _FAILED_TO_PARSE)
    return op_id


def _subscribe(message: Mapping[str, Any]) -> Subscribe:
    op_id = _operation_id(message)
    payload = message.get("payload")
    if not isinstance(payload, dict):
        raise ProtocolViolation(CloseCode.BAD_REQUEST, _FAILED_TO_PARSE)
    operation_name = payload.get("operationName")
    if operation_name is not None and not isinstance(operation_name, str):
        raise ProtocolViolation(CloseCode.BAD_REQUEST, _FAILED_TO_PARSE)
    variables = _optional_dict(payload.get("variables"), _FAILED_TO_PARSE)
    extensions = _optional_dict(payload.get("extensions"), _FAILED_TO_PARSE)
    document_id = payload.get("documentId", payload.get("doc_id"))
    if document_id is not None and not isinstance(document_id, str):
        raise ProtocolViolation(CloseCode.BAD_REQUEST, _FAILED_TO_PARSE)
    subscribe = Subscribe(
        op_id, payload.get("query") or "", variables, operation_name, extensions, document_id
    )
    query = payload.get("query")
    if not (isinstance(query, str) or (query is None and subscribe.names_a_document)):
        raise ProtocolViolation(CloseCode.BAD_REQUEST, _FAILED_TO_PARSE)
    return subscribe


def parse_message(text: str) -> ClientMessage:
    """The client message in ``text``; raises ``ProtocolViolation`` (4400) if it is not one."""
    try:
        message = json.loads(text)
    except ValueError as error:
        raise ProtocolViolation(
            CloseCode.BAD_REQUEST, "WebSocket message must be valid JSON"
        ) from error
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolViolation(CloseCode.BAD_REQUEST, _FAILED_TO_PARSE)
    kind = message["type"]
    if kind == "subscribe":
        return _subscribe(message)
    if kind == "complete":
        return Complete(_operation_id(message))
    if kind == "ping":
        return Ping(_optional_dict(message.get("payload"), _FAILED_TO_PARSE))
    if kind == "pong":
        return Pong(_optional_dict(message.get("payload"), _FAILED_TO_PARSE))
    if kind == "connection_init":
        payload = _optional_dict(message.get("payload"), "Invalid connection init payload")
        return ConnectionInit(payload or {})
    raise ProtocolViolation(CloseCode.BAD_REQUEST, f"Unknown message type: {kind}"[:100])


def pick_subprotocol(offered: Sequence[str]) -> str | None:
    """The first subprotocol the client offers that this server speaks (the client's order)."""
    return next((protocol for protocol in offered if protocol in SUBPROTOCOLS), None)


def fit_reason(reason: str) -> str:
    """``reason`` cut to what fits in a close frame."""
    encoded = reason.encode()
    if len(encoded) <= MAX_CLOSE_REASON_BYTES:
        return reason
    return encoded[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore")


def dumps(value: object) -> str:
    """Compact JSON, as Strawberry writes its frames."""
    return json.dumps(value, separators=(",", ":"))


def ack_frame(payload: Mapping[str, object] | None) -> str:
    if payload is None:
        return '{"type":"connection_ack"}'
    return dumps({"type": "connection_ack", "payload": payload})


PONG_FRAME = '{"type":"pong"}'


def next_prefix(op_id: str) -> str:
    """The text of a ``next`` frame before its payload; the frame is this, the payload, ``}``."""
    return '{"id":' + dumps(op_id) + ',"type":"next","payload":'


def next_frame(op_id: str, payload: str) -> str:
    return next_prefix(op_id) + payload + "}"


def error_frame(op_id: str, errors: Sequence[GraphQLFormattedError]) -> str:
    return dumps({"id": op_id, "type": "error", "payload": list(errors)})


def complete_frame(op_id: str) -> str:
    return dumps({"id": op_id, "type": "complete"})


def result_payload(result: ExecutionResult) -> str:
    """A result as the JSON payload of a ``next`` frame (the shape Strawberry sends)."""
    payload: dict[str, object] = {"data": result.data}
    if result.errors:
        payload["errors"] = [error.formatted for error in result.errors]
    if result.extensions:
        payload["extensions"] = result.extensions
    try:  # orjson: a fifth of the json module's time, paid once per result of a live group
        return orjson.dumps(payload).decode()
    except TypeError:  # what orjson cannot write (an integer beyond 64 bits): as before
        return dumps(payload)


def close_reason(error: GraphQLError) -> str | None:
    """Why a document refused before execution closes the socket (an unparsable document, or
    no operation to run), or None when the error is sent to the subscriber instead."""
    if isinstance(error, GraphQLSyntaxError):
        return error.message
    if isinstance(error.original_error, CannotGetOperationTypeError):
        return error.original_error.as_http_error_reason()
    return None


@lru_cache(maxsize=1024)
def _cached_parse(query: str, max_tokens: int) -> DocumentNode:
    return parse(query, max_tokens=max_tokens)


def operation_type(
    query: str, operation_name: str | None, *, max_tokens: int
) -> OperationType | None:
    """The type of the operation a subscribe message runs, None if the document names no single
    operation to run. Raises ``GraphQLSyntaxError`` for an unparsable or too long document."""
    if len(query) <= CACHED_DOCUMENT_CHARS:
        document = _cached_parse(query, max_tokens)
    else:
        document = parse(query, max_tokens=max_tokens)
    operation = get_operation_ast(document, operation_name)
    return None if operation is None else operation.operation
