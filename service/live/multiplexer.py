"""Multiplexed subscriptions: subscribers that would get the same results share one execution.

Subscribers with the same document, operation name, variables and visibility (organisation and
role of the viewer) form a ``Group``. The group runs the subscription once, with a viewer that
acts through no single token, serialises each result once and sends it to every member in
turn, as a ``next`` frame built around that text.

A group is created by its first subscriber and its execution cancelled when its last one
leaves. A group that replays events (``afterEventId``) takes no members once the replay has
begun, so everyone in it has seen the same events from the start.

Token revocation still ends the right sockets: the group's event stream also carries the
organisation's ``API_TOKEN_REVOKED`` events, and on one the group ends the subscriptions of
members on that token (``next`` with an UNAUTHENTICATED error, then ``complete``) before it
delivers anything later.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from graphql import FieldNode, GraphQLError, GraphQLFormattedError, get_operation_ast, parse
from starlette.applications import Starlette

from compat.strawberry import PreExecutionError
from domain import tracing
from domain.access import Viewer
from domain.events import EventType, PublishedEvent
from integrations.bus.tracing import delivered
from resolvers.context import Context, Services
from resolvers.errors import PublicError
from service.live.protocol import (
    CloseCode,
    Subscribe,
    close_reason,
    complete_frame,
    dumps,
    error_frame,
    next_prefix,
    result_payload,
)
from service.observability import bind_request, bind_viewer, new_request_id

if TYPE_CHECKING:
    from strawberry import Schema

    from integrations.bus.hub import EventHub
    from service.live.connection import Connection

log = logging.getLogger(__name__)

REVOKED_MESSAGE = "The token of this connection was revoked."
REVOKED_ERROR: GraphQLFormattedError = PublicError(
    REVOKED_MESSAGE, code="UNAUTHENTICATED"
).formatted
_REVOKED_PAYLOAD = dumps({"data": None, "errors": [REVOKED_ERROR]})

# (document, operation name, canonical JSON of the variables, organisation id, role)
GroupKey = tuple[str, str | None, str, int, str]


@dataclass(frozen=True, slots=True)
class SharedRequest:
    """What a group's context offers as ``request``: the application, and no single socket
    (members come and go)."""

    app: Starlette


@dataclass(eq=False, slots=True)
class Member:
    """One subscription of one socket, served by ``group``."""

    connection: Connection
    id: str
    group: Group
    prefix: str


class GroupHub:
    """The event hub as a group's resolvers see it (``info.context.hub``).

    Streams carry no token (a member's revoked token must not end the others); instead they
    also read the organisation's token revocations and hand them to the group.
    """

    def __init__(self, hub: EventHub, group: Group) -> None:
        self._hub = hub
        self._group = group

    async def stream(
        self,
        *,
        organisation_id: int,
        token_id: int | None = None,
        after_seq: int | None = None,
        types: Collection[str] | None = None,
    ) -> AsyncIterator[PublishedEvent]:
        """``EventHub.stream`` for the group. ``token_id`` is not passed on: the group's viewer
        has none, and each member's token is checked on revocation events instead."""
        group, hub = self._group, self._hub
        wanted = set(types) if types else None
        read = None if wanted is None else sorted({*wanted, EventType.API_TOKEN_REVOKED.value})
        if after_seq is not None:
            group.retire()  # a replay: later subscribers get a group of their own
        source = hub.stream(
            organisation_id=organisation_id,
            after_seq=after_seq,
            types=read,
            field_name=group.field_name if tracing.ENABLED else None,
        )
        # ``hub.stream`` registers on its first step, without waiting, unless the hub is closed:
        # the group counts as listening from here (nothing else runs before that step).
        registered = not hub.closed
        if registered:
            group.listen(True)
        try:
            async for event in source:
                if event.type == EventType.API_TOKEN_REVOKED:
                    await group.revoke(event.subject_id)
                    if wanted is not None and event.type not in wanted:
                        continue
                yield event
        finally:
            await source.aclose()
            if registered:
                group.listen(False)


class Group:
    """One execution of a subscription and the members it serves; runs from creation until
    its stream ends or its last member leaves."""

    def __init__(
        self,
        multiplexer: Multiplexer,
        key: GroupKey,
        request: Subscribe,
        viewer: Viewer,
    ) -> None:
        self.key = key
        self.members: dict[Member, None] = {}
        self.listening = False
        self._multiplexer = multiplexer
        self._request = request
        self._retired = False
        # The group acts for the visibility, not for one member's token.
        group_viewer = dataclasses.replace(viewer, token_id=None)
        self._context = Context(
            request=SharedRequest(multiplexer.app),
            response=None,
            request_id=new_request_id(),
            hub=cast("EventHub", GroupHub(multiplexer.hub, self)),
            services=multiplexer.services,
            viewer=group_viewer,
        )
        self._context.fresh_loaders()
        self.task: asyncio.Task[None] = asyncio.create_task(
            self._run(), name="live-subscription-group"
        )

    def retire(self) -> None:
        """Take no more members (the group is ending, or replaying)."""
        if not self._retired:
            self._retired = True
            self._multiplexer.retire(self)

    def listen(self, listening: bool) -> None:
        self.listening = listening
        self._multiplexer.hub_streams += 1 if listening else -1

    def cancel(self) -> None:
        self.retire()
        self.task.cancel()

    async def revoke(self, token_id: str) -> None:
        """End the subscriptions of members on the revoked token ``token_id``."""
        ended = [m for m in self.members if m.connection.token_id == token_id]
        for member in ended:
            del self.members[member]
            connection = member.connection
            connection.revoked = True
            connection.forget(member.id, member)
        emptied = bool(ended) and not self.members
        if emptied:
            self.retire()
        for member in ended:
            await member.connection.send(member.prefix + _REVOKED_PAYLOAD + "}")
            await member.connection.send(complete_frame(member.id))
        if emptied:
            self.cancel()

    async def _run(self) -> None:
        # the group's own id and organisation, not those of the socket that started it
        bind_request(self._context.request_id)
        bind_viewer(self._context.viewer)
        request = self._request
        try:
            source = await self._multiplexer.schema.subscribe(
                request.query,
                variable_values=request.variables,
                context_value=self._context,
                operation_name=request.operation_name,
            )
            async with aclosing(source):
                first = True
                async for result in source:
                    if first and isinstance(result, PreExecutionError):
                        await self._refuse(result.errors or [])
                        return
                    first = False
                    if result.errors and result.data is None:
                        self.retire()  # the stream fails: whoever comes next starts afresh
                    self._deliver(result_payload(result))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("subscription group failed")
        finally:
            self._multiplexer.discard(self)
            await self._end_members()

    def _deliver(self, payload: str) -> None:
        """Hand one serialised result to every member, each frame built around the same text
        once per operation id in use (clients mostly use the same ids: one frame for all); a
        member whose client reads slowly holds up no one (``Connection.push``)."""
        frames: dict[str, str] = {}
        for member in self.members:
            frame = frames.get(member.prefix)
            if frame is None:
                frame = frames[member.prefix] = member.prefix + payload + "}"
            member.connection.push(frame)
        if tracing.ENABLED:
            delivered(len(self.members))

    @functools.cached_property
    def field_name(self) -> str | None:
        """The subscribed field (the operation's first root field), naming its delivery spans;
        read only while tracing is on."""
        request = self._request
        try:
            operation = get_operation_ast(parse(request.query), request.operation_name)
        except GraphQLError:
            return None
        if operation is None:
            return None
        for selection in operation.selection_set.selections:
            if isinstance(selection, FieldNode):
                return selection.name.value
        return None

    async def _refuse(self, errors: Sequence[GraphQLError]) -> None:
        """The document was refused before execution: the same answer for every member (they
        all sent the same document and variables with the same visibility)."""
        self.retire()
        reason = close_reason(errors[0]) if errors else None
        formatted = [error.formatted for error in errors]
        members, self.members = list(self.members), {}
        for member in members:
            member.connection.forget(member.id, member)
        for member in members:
            if reason is not None:
                await member.connection.close(CloseCode.BAD_REQUEST, reason)
            else:
                await member.connection.send(error_frame(member.id, formatted))

    async def _end_members(self) -> None:
        self.retire()
        members, self.members = list(self.members), {}
        for member in members:
            member.connection.forget(member.id, member)
        for member in members:
            await member.connection.send(complete_frame(member.id))


def _canonical(variables: dict[str, Any] | None) -> str:
    return json.dumps(variables or {}, sort_keys=True, separators=(",", ":"))


class Multiplexer:
    """Every group of this process, and the figures the metrics and tests read."""

    def __init__(self, schema: Schema, hub: EventHub, app: Starlette, services: Services) -> None:
        self.schema = schema
        self.hub = hub
        self.app = app
        self.services = services
        self.hub_streams = 0  # hub streams held by groups (the rest are graphql-ws sockets')
        self._joinable: dict[GroupKey, Group] = {}
        self._groups: set[Group] = set()

    def join(self, connection: Connection, request: Subscribe) -> Member:
        """Add the subscription ``request`` of ``connection`` to its group (a new one if none
        takes members)."""
        viewer = connection.context.viewer
        if viewer is None:
            raise RuntimeError("only an acknowledged connection subscribes")
        key: GroupKey = (
            request.query,
            request.operation_name,
            _canonical(request.variables),
            viewer.organisation_id,
            viewer.role.value,
        )
        group = self._joinable.get(key)
        if group is None:
            group = Group(self, key, request, viewer)
            self._joinable[key] = group
            self._groups.add(group)
        member = Member(connection, request.id, group, next_prefix(request.id))
        group.members[member] = None
        return member

    def leave(self, member: Member) -> None:
        """Drop ``member`` from its group; the group's execution ends with its last member."""
        group = member.group
        if member not in group.members:
            return
        del group.members[member]
        if not group.members:
            group.cancel()

    def retire(self, group: Group) -> None:
        if self._joinable.get(group.key) is group:
            del self._joinable[group.key]

    def discard(self, group: Group) -> None:
        self.retire(group)
        self._groups.discard(group)

    @property
    def group_count(self) -> int:
        return len(self._groups)

    @property
    def legacy_subscriptions(self) -> int:
        """Subscriptions of graphql-ws sockets (served by Strawberry, one hub stream each)."""
        return max(0, self.hub.subscriber_count - self.hub_streams)

    @property
    def open_subscriptions(self) -> int:
        """Every subscription open on this process."""
        members = sum(len(group.members) for group in self._groups)
        return members + self.legacy_subscriptions

    @property
    def listening_subscriptions(self) -> int:
        """Subscriptions already receiving events: those of groups whose event stream is
        registered with the hub, and graphql-ws ones."""
        members = sum(len(group.members) for group in self._groups if group.listening)
        return members + self.legacy_subscriptions

    async def stop(self) -> None:
        """Cancel every group's execution and wait for it to end."""
        groups = list(self._groups)
        for group in groups:
            group.cancel()
        for group in groups:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await group.task
