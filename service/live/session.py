"""One graphql-transport-ws connection from handshake to close: authentication, the protocol's
rules, subscriptions handed to the multiplexer, and queries and mutations run for the socket.

Behaves as Strawberry's own handler does (same close codes, frames and error shapes), except
that subscriptions are shared through ``Multiplexer`` and a socket whose token was revoked can
start no further operation. A subscription is charged its query cost once, as it starts
(``service/limits/``), and refused with an ``error`` message when its token's bucket is short.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from contextlib import aclosing
from datetime import timedelta

from graphql import GraphQLError, GraphQLFormattedError, GraphQLSyntaxError, OperationType
from starlette.types import Send
from starlette.websockets import WebSocket
from strawberry.exceptions import ConnectionRejectionError
from strawberry.types.execution import ExecutionResult
from strawberry.types.unset import UnsetType

from compat.strawberry import PreExecutionError, core_schema
from domain.organisations import tokens
from resolvers.context import Context
from service.graphql_view import BAD_TOKEN, GraphQLView
from service.live.connection import Connection
from service.live.multiplexer import REVOKED_ERROR, Member, Multiplexer
from service.live.protocol import (
    PONG_FRAME,
    ClientMessage,
    CloseCode,
    Complete,
    ConnectionInit,
    Ping,
    ProtocolViolation,
    Subscribe,
    ack_frame,
    close_reason,
    complete_frame,
    error_frame,
    next_frame,
    operation_type,
    parse_message,
    result_payload,
)
from service.persisted_documents import DocumentRef, PersistedDocumentError

log = logging.getLogger(__name__)

SUBSCRIPTION_LIMIT = "Subscription limit reached"
INCREMENTAL_DELIVERY = "Incremental delivery is not supported over graphql-transport-ws"


class Session:
    """The protocol's state for one socket; ``run`` reads its messages until it closes."""

    def __init__(
        self,
        websocket: WebSocket,
        context: Context,
        *,
        view: GraphQLView,
        multiplexer: Multiplexer,
        max_tokens: int,
        send: Send,
    ) -> None:
        self._view = view
        self._multiplexer = multiplexer
        self._max_tokens = max_tokens
        self._connection = Connection(websocket, context, send)
        self._init_timeout: asyncio.Task[None] | None = None
        self._init_received = False
        self._acknowledged = False
        self._timed_out = False

    async def run(self) -> None:
        """Serve the socket until the client leaves or the socket is closed."""
        connection = self._connection
        self._init_timeout = asyncio.create_task(self._close_without_init())
        try:
            while not connection.closed:
                message = await connection.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                try:
                    text = message.get("text")
                    if text is None:
                        raise ProtocolViolation(
                            CloseCode.BAD_REQUEST, "WebSocket message type must be text"
                        )
                    await self._handle(parse_message(text))
                except ProtocolViolation as violation:
                    await connection.close(violation.code, violation.reason)
        finally:
            self._init_timeout.cancel()
            await self._end_operations()
            connection.stop_writing()

    async def close(self, code: int, reason: str) -> None:
        """Close the socket from outside the session (the process is stopping): after the
        frames already handed over; ``run`` then ends as the socket's disconnect arrives."""
        await self._connection.close(code, reason)

    async def _close_without_init(self) -> None:
        timeout: timedelta = self._view.connection_init_wait_timeout
        await asyncio.sleep(timeout.total_seconds())
        if not self._init_received:
            self._timed_out = True
            await self._connection.close(
                CloseCode.CONNECTION_INIT_TIMEOUT, "Connection initialisation timeout"
            )

    async def _handle(self, message: ClientMessage) -> None:
        if isinstance(message, Subscribe):
            await self._subscribe(message)
        elif isinstance(message, Complete):
            self._complete(message.id)
        elif isinstance(message, Ping):
            await self._connection.send(PONG_FRAME)
        elif isinstance(message, ConnectionInit):
            await self._connection_init(message)

    async def _connection_init(self, message: ConnectionInit) -> None:
        if self._timed_out:
            return
        if self._init_timeout is not None:
            self._init_timeout.cancel()
        if self._init_received:
            raise ProtocolViolation(
                CloseCode.TOO_MANY_INITIALISATION_REQUESTS, "Too many initialisation requests"
            )
        self._init_received = True
        context = self._connection.context
        context.connection_params = message.payload
        try:
            payload = await self._view.on_ws_connect(context)
        except ConnectionRejectionError as rejected:
            reason = rejected.payload.get("message")
            raise ProtocolViolation(
                CloseCode.FORBIDDEN, reason if isinstance(reason, str) else BAD_TOKEN
            ) from rejected
        if context.viewer is not None:
            self._connection.token_id = str(context.viewer.token_id)
        await self._connection.send(ack_frame(None if isinstance(payload, UnsetType) else payload))
        self._acknowledged = True

    async def _subscribe(self, message: Subscribe) -> None:
        connection = self._connection
        if not self._acknowledged:
            raise ProtocolViolation(CloseCode.UNAUTHORIZED, "Unauthorized")
        if message.id in connection.operations:
            raise ProtocolViolation(
                CloseCode.SUBSCRIBER_ALREADY_EXISTS, f"Subscriber for {message.id} already exists"
            )
        limit = self._view.max_subscriptions_per_connection
        if limit is not None and len(connection.operations) >= limit:
            errors = [GraphQLError(SUBSCRIPTION_LIMIT).formatted]
            await connection.send(error_frame(message.id, errors))
            return
        if not connection.revoked and connection.token_id is not None:
            # the revocation event reaches only sockets with a running subscription
            connection.revoked = not await tokens.still_valid(token_id=int(connection.token_id))
        if connection.revoked:
            await connection.send(error_frame(message.id, [REVOKED_ERROR]))
            return
        if message.names_a_document:
            ref = DocumentRef(message.query or None, message.extensions, message.document_id)
            try:
                query = await self._view.documents.resolve(ref)
            except PersistedDocumentError as e:
                error = {"message": e.message, "extensions": {"code": e.code}}
                await connection.send(error_frame(message.id, [error]))
                return
            message = dataclasses.replace(message, query=query or "")
        try:
            kind = operation_type(
                message.query, message.operation_name, max_tokens=self._max_tokens
            )
        except GraphQLSyntaxError as error:
            raise ProtocolViolation(CloseCode.BAD_REQUEST, error.message) from error
        if kind is OperationType.SUBSCRIPTION:
            refusal = await self._charge(message)
            if refusal is not None:
                await connection.send(error_frame(message.id, [refusal]))
                return
            connection.operations[message.id] = self._multiplexer.join(connection, message)
        else:
            connection.operations[message.id] = asyncio.create_task(
                self._run_once(message), name="live-socket-operation"
            )

    async def _charge(self, message: Subscribe) -> GraphQLFormattedError | None:
        """Charge a subscription's cost to the socket's token once, as it starts (its group
        may already run, for others): the refusal to send instead, if any."""
        throttle = self._view.throttle
        viewer = self._connection.context.viewer
        if throttle is None or not throttle.limits.costs or viewer is None:
            return None
        schema = core_schema(self._view.schema)
        cost = throttle.price(schema, message.query, message.operation_name, message.variables)
        if cost is None:
            return None
        charge = await throttle.charge(viewer.token_id, cost)
        return None if charge.refusal is None else charge.refusal.formatted

    def _complete(self, op_id: str) -> None:
        operation = self._connection.operations.pop(op_id, None)
        if isinstance(operation, Member):
            self._multiplexer.leave(operation)
        elif operation is not None:
            operation.cancel()

    async def _run_once(self, message: Subscribe) -> None:
        """A query or mutation (or a document whose operation is unclear) for this socket
        alone: its result as ``next`` then ``complete``, or an ``error``."""
        connection, op_id = self._connection, message.id
        task = asyncio.current_task()
        final: str | None = complete_frame(op_id)
        try:
            source = await self._view.schema.stream(
                message.query,
                variable_values=message.variables,
                context_value=connection.context,
                operation_name=message.operation_name,
            )
            async with aclosing(source):
                first = True
                async for result in source:
                    if first and isinstance(result, PreExecutionError):
                        errors = result.errors or []
                        reason = close_reason(errors[0]) if errors else None
                        if reason is not None:
                            final = None
                            await connection.close(CloseCode.BAD_REQUEST, reason)
                        else:
                            final = error_frame(op_id, [e.formatted for e in errors])
                        return
                    if not isinstance(result, ExecutionResult):
                        final = error_frame(op_id, [GraphQLError(INCREMENTAL_DELIVERY).formatted])
                        return
                    first = False
                    await connection.send(next_frame(op_id, result_payload(result)))
        except asyncio.CancelledError:
            final = None
            raise
        except Exception:
            log.exception("operation over WebSocket failed")
        finally:
            if task is not None and connection.operations.get(op_id) is task:
                del connection.operations[op_id]
                if final is not None:
                    await connection.send(final)

    async def _end_operations(self) -> None:
        """Leave every group and stop every operation of the socket."""
        operations = list(self._connection.operations.values())
        self._connection.operations.clear()
        tasks: list[asyncio.Task[None]] = []
        for operation in operations:
            if isinstance(operation, Member):
                self._multiplexer.leave(operation)
            else:
                operation.cancel()
                tasks.append(operation)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
