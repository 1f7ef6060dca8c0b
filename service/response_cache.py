"""An in-process cache of GraphQL query responses, invalidated by the events that change what
they show.

Dashboards reload the same pages; ``GraphQLView`` answers a repeated query from here with the
bytes of the earlier response, without executing it again.

**What is cached.** The body of a single GraphQL *query* sent over HTTP (POST JSON or GET) with
an ``Authorization: Bearer`` token that authenticates, whose result has no ``errors``. Never
mutations, subscriptions, batches, streamed (``Accept: multipart/mixed`` or
``text/event-stream``) or anonymous requests, requests carrying ``extensions``, nor documents
longer than ``MAX_DOCUMENT_CHARS``.

**Key.** (organisation, role, user, document text, operation name, variables as canonical
JSON), plus the token id when the document selects a field of ``TOKEN_SCOPED_FIELDS``. The user
is always part of it because some answers depend on the user (``me``, and ``apiTokens`` for
non-admins); the token is not, except for ``me { tokenId }``. The bearer secret is never part of
the key: every request is authenticated before the cache is consulted, so a revoked or expired
token is refused even when its page is cached. The key also carries what the document reads
of data other organisations change (``Reads``, from ``service/invalidation.py``), a function
of the document, so it only labels the entry.

**Authentication.** Looking the token up in the database would cost more than answering from
the cache, so ``TokenCache`` keeps the viewer of a bearer secret (by its SHA-256) for at most
``TOKEN_TTL`` seconds and never past the token's expiry. It serves only queries that consult
the response cache; mutations, WebSockets and every other request are authenticated against
the database as before. It forgets a token when the hub dispatches its ``API_TOKEN_REVOKED``
event, every token of an organisation when a mutation of that organisation is answered by this
process (a revocation through this instance is effective for the very next request), and
everything when the broadcast may have dropped events. A revocation made through another
instance takes effect here with the broadcast latency, at worst after ``TOKEN_TTL`` seconds; a
change that records no event (a user deactivated in the database) takes up to ``TOKEN_TTL``
seconds. Re-authenticating at least every ``TOKEN_TTL`` seconds also keeps
``ApiToken.lastUsedAt`` at its one-minute resolution.

**Invalidation.** Every state change records an event in its transaction, naming its
audience, the organisations that may see it (``domain/events/``); ``service/invalidation.py``
lists, for every mutation, the events it records, and a test holds the code to that list. The
process's ``EventHub`` receives every event of every instance and calls ``on_event``, which
moves the generation of each organisation of the audience forward, and, for an event that
changes data organisations outside its audience see (``domain.shared_data``: a product, a
logistics method, a cloud warehouse, a store, an organisation's name), the generation of that
kind of shared data. An entry is served only while neither its organisation's generation nor
that of any kind of shared data its document reads (``Reads``: from the root fields and the
field names it selects, ``service/invalidation.py``) has moved since the entry was *started*
(its generation is read before the query executes, so a result computed across a change is
dropped rather than stored). So a supplier's ``createProduct`` drops every buyer's cached
``products`` and every cached page that selects a SKU or product, and nothing else of theirs.
When the broadcast may have dropped events (a RESYNC after a Redis reconnect, a restart of the
hub's listener) the whole cache is cleared. A mutation answered by this process moves the
caller's organisation forward before its response is sent. And a read that arrives after a
commit of this process (a mutation over HTTP or WebSocket, a webhook, background work) is
served from the cache only once the hub has dispatched that commit's events: a commit listener
counts such commits, and the first reader after one numbers the committed events and has the
hub catch up from the outbox if the publisher has not got there yet (``ResponseCache.settle``).
So a read that follows a write through the same instance always sees it, whoever wrote.

**How stale can it be.** Never older than a change whose event this process's hub has
dispatched:

- a change made through this process: invalidated for every read that starts after the
  change committed (see ``settle``);
- a change made through another instance: invalidated when its event arrives over Redis, the
  same latency as a subscription's notification (normally a millisecond or two after commit);
  if the message is lost (Redis down or reconnecting), when the hub next reads the outbox
  (within ``EVENT_RESYNC_INTERVAL`` seconds), as for subscriptions.

A read that runs while a change commits may be answered either way, as without the cache.
``RESPONSE_CACHE_TTL`` only bounds how long an entry keeps its memory: no change waits for it.
``ApiToken.lastUsedAt`` is written by authentication without an event, so a document selecting
it (``UNCACHED_FIELDS``) is never cached.

Each process has its own cache (``WORKERS > 1`` means one per worker), bounded by entries and by
bytes, least recently used first.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    Visitor,
    parse,
    visit,
)

from domain.access import Viewer
from domain.db import add_commit_listener
from domain.events import EventType, PublishedEvent, outbox
from domain.organisations import tokens
from domain.organisations.models import ApiToken
from domain.shared_data import SharedData, changed_by
from service import invalidation

if TYPE_CHECKING:
    from integrations.bus.hub import EventHub

log = logging.getLogger(__name__)

# Fields whose value depends on the token a request came with (``Me.tokenId``, from
# ``viewer.token_id``); a document selecting one is cached per token rather than per user.
TOKEN_SCOPED_FIELDS = frozenset({"tokenId"})
MAX_DOCUMENT_CHARS = 32_768
DOCUMENTS_KEPT = 512
ENTRY_OVERHEAD = 256  # bytes counted per entry beyond its body, document and variables
LARGEST_ENTRY_SHARE = 8  # one entry may take at most 1/8 of the byte budget
TOKEN_TTL = 5.0
TOKENS_KEPT = 10_000

Reads = frozenset[SharedData] | None  # what a document reads that others change; None: uncached
Key = tuple[int, str, int, int | None, str, str | None, str, Reads]


@dataclass(frozen=True, slots=True)
class Operation:
    """What the cache needs to know about the operation a request selects."""

    kind: OperationType
    name: str | None
    token_scoped: bool
    reads: Reads = frozenset()


class _FieldNames(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def enter_field(self, node: FieldNode, *_: Any) -> None:
        self.names.add(node.name.value)


def analyse(document: str, operation_name: str | None, *, max_tokens: int) -> Operation | None:
    """The operation ``document`` selects by ``operation_name``; None when the document does not
    parse or the selection is ambiguous (execution reports that, nothing is cached)."""
    try:
        parsed: DocumentNode = parse(document, no_location=True, max_tokens=max_tokens)
    except (GraphQLError, RecursionError):
        return None
    operations = [d for d in parsed.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is None:
        if len(operations) != 1:
            return None
        chosen = operations[0]
    else:
        named = [o for o in operations if o.name is not None and o.name.value == operation_name]
        if len(named) != 1:
            return None
        chosen = named[0]
    fields = _FieldNames()
    visit(parsed, fields)
    fragments = {
        d.name.value: d for d in parsed.definitions if isinstance(d, FragmentDefinitionNode)
    }
    return Operation(
        chosen.operation,
        chosen.name.value if chosen.name else None,
        not fields.names.isdisjoint(TOKEN_SCOPED_FIELDS),
        invalidation.reads(_root_fields(chosen.selection_set, fragments, set()), fields.names),
    )


def _root_fields(
    selections: SelectionSetNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    spread: set[str],
) -> list[str]:
    """The names of the fields an operation selects at its root, through fragments."""
    names: list[str] = []
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            names.append(selection.name.value)
        elif isinstance(selection, InlineFragmentNode):
            names += _root_fields(selection.selection_set, fragments, spread)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if fragment is not None and name not in spread:
                spread.add(name)
                names += _root_fields(fragment.selection_set, fragments, spread)
    return names


class OperationIndex:
    """``analyse`` with a bounded memory of the documents seen (clients send the same few)."""

    def __init__(self, *, max_tokens: int, size: int = DOCUMENTS_KEPT) -> None:
        self._max_tokens = max_tokens
        self._size = size
        self._known: OrderedDict[tuple[str, str | None], Operation | None] = OrderedDict()

    def get(self, document: str, operation_name: str | None) -> Operation | None:
        key = (document, operation_name)
        try:
            found = self._known[key]
        except KeyError:
            found = analyse(document, operation_name, max_tokens=self._max_tokens)
            self._known[key] = found
            if len(self._known) > self._size:
                self._known.popitem(last=False)
            return found
        self._known.move_to_end(key)
        return found


def request_key(
    viewer: Viewer,
    operation: Operation,
    document: str,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
) -> Key:
    """The cache key of a request (see the module docstring)."""
    canonical = json.dumps(
        variables or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return (
        viewer.organisation_id,
        viewer.role.value,
        viewer.user_id,
        viewer.token_id if operation.token_scoped else None,
        document,
        operation_name,
        canonical,
        operation.reads,
    )


@dataclass(frozen=True, slots=True)
class _Known:
    viewer: Viewer
    until: float  # clock time after which the secret is authenticated again


class TokenCache:
    """The viewers of recently authenticated bearer secrets (see the module docstring)."""

    def __init__(
        self,
        *,
        ttl: float = TOKEN_TTL,
        size: int = TOKENS_KEPT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self._size = size
        self._clock = clock
        self._known: OrderedDict[bytes, _Known] = OrderedDict()
        self._generation = 0  # moves forward whenever something is forgotten

    def __len__(self) -> int:
        return len(self._known)

    async def authenticate(self, secret: str) -> Viewer | None:
        """The viewer ``secret`` stands for, as ``domain.tokens.authenticate`` says."""
        digest = hashlib.sha256(secret.encode()).digest()
        known = self._known.get(digest)
        if known is not None:
            if self._clock() < known.until:
                return known.viewer
            del self._known[digest]
        generation = self._generation
        viewer = await tokens.authenticate(secret=secret)
        if viewer is None:
            return None
        expiry = await ApiToken.filter(id=viewer.token_id).values_list("expires_at", flat=True)
        until = self._clock() + self.ttl
        for expires_at in expiry:
            if isinstance(expires_at, datetime):
                left = (expires_at - datetime.now(UTC)).total_seconds()
                until = min(until, self._clock() + left)
        if expiry and generation == self._generation:  # nothing was forgotten meanwhile
            self._known[digest] = _Known(viewer, until)
            if len(self._known) > self._size:
                self._known.popitem(last=False)
        return viewer

    def forget_token(self, token_id: int) -> None:
        self._forget(lambda viewer: viewer.token_id == token_id)

    def forget_organisation(self, organisation_id: int) -> None:
        self._forget(lambda viewer: viewer.organisation_id == organisation_id)

    def clear(self) -> None:
        self._generation += 1
        self._known.clear()

    def _forget(self, matches: Callable[[Viewer], bool]) -> None:
        self._generation += 1
        for digest in [d for d, k in self._known.items() if matches(k.viewer)]:
            del self._known[digest]


_caches: weakref.WeakSet[ResponseCache] = weakref.WeakSet()


def _committed_here() -> None:
    """Commit listener: a transaction of this process recorded events."""
    for cache in list(_caches):
        cache.note_commit()


add_commit_listener(_committed_here)


@dataclass(frozen=True, slots=True)
class Ticket:
    """Taken before a query executes: the generation it starts from and when."""

    generation: int
    started: float


@dataclass(slots=True)
class _Entry:
    organisation_id: int
    reads: frozenset[SharedData]
    generation: int
    expires: float
    body: bytes
    size: int


class ResponseCache:
    """Response bodies by ``Key``, valid while their organisation's generation stands still."""

    def __init__(
        self,
        *,
        max_entries: int,
        max_bytes: int,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl = ttl
        self._clock = clock
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._bytes = 0
        self._generation = 0  # moves forward on every invalidation
        self._organisations: dict[int, int] = {}  # generation of each organisation's last change
        self._shared: dict[SharedData, int] = {}  # generation of each kind's last change
        self._shared_last = 0  # generation of the last change to any kind
        self._cleared = 0  # generation of the last clear
        self._hub: EventHub | None = None
        self.tokens = TokenCache(clock=clock)
        self._committed = 0  # commits of this process that recorded events
        self._dispatched = 0  # of those, how many the hub is known to have dispatched
        self._settling: asyncio.Task[bool] | None = None
        _caches.add(self)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    # ------------------------------------------------------------------ invalidation

    def follow(self, hub: EventHub) -> None:
        """Take invalidations from ``hub`` (once per hub; a new hub starts from empty)."""
        if hub is self._hub:
            return
        self.clear()
        hub.on_dispatch(self.on_event)
        self._hub = hub

    def on_event(self, event: PublishedEvent | None) -> None:
        """The hub's listener: an event invalidates its audience, and every entry that read the
        shared data it changes (and a revocation forgets its token); None everything."""
        if event is None:
            self.clear()
            self.tokens.clear()
            return
        for organisation_id in event.audience:
            self.invalidate_organisation(organisation_id)
        shared = changed_by(event.type)
        if shared is not None:
            self.invalidate_shared(shared)
        if event.type == EventType.API_TOKEN_REVOKED:
            self.tokens.forget_token(int(event.subject_id))

    def after_mutation(self, organisation_id: int) -> None:
        """A mutation of ``organisation_id`` was answered by this process: what it changed may
        not have reached the hub yet (read-your-writes), and it may have revoked a token."""
        self.invalidate_organisation(organisation_id)
        self.tokens.forget_organisation(organisation_id)

    def note_commit(self) -> None:
        self._committed += 1

    async def settle(self) -> bool:
        """Make sure the hub has dispatched the events of every commit this process made before
        now (a webhook or a mutation that just answered), so that no entry they invalidate is
        served; False if that could not be done (then nothing may be served from the cache).

        Usually a comparison. After a local commit the first reader numbers what is committed
        (as any publisher may) and has the hub dispatch it from the outbox: a couple of
        statements, shared by the readers that arrive meanwhile.
        """
        target = self._committed
        while self._dispatched < target:
            if self._hub is None:
                return False
            if self._settling is None:
                self._settling = asyncio.create_task(self._dispatch_committed(self._hub))
            if not await asyncio.shield(self._settling):
                return False
        return True

    async def _dispatch_committed(self, hub: EventHub) -> bool:
        upto = self._committed
        try:
            await outbox.assign_all()
            await hub.catch_up()
        except Exception:
            log.exception("response cache could not catch up with the outbox")
            return False
        finally:
            self._settling = None
        self._dispatched = max(self._dispatched, upto)
        return True

    def invalidate_organisation(self, organisation_id: int) -> None:
        self._generation += 1
        self._organisations[organisation_id] = self._generation

    def invalidate_shared(self, shared: SharedData) -> None:
        """Every entry that read ``shared``, whichever organisation's."""
        self._generation += 1
        self._shared[shared] = self._shared_last = self._generation

    def clear(self) -> None:
        self._generation += 1
        self._cleared = self._generation
        self._entries.clear()
        self._bytes = 0

    def _current(self, organisation_id: int, reads: frozenset[SharedData], generation: int) -> bool:
        if generation < self._cleared or generation < self._organisations.get(organisation_id, 0):
            return False
        if generation >= self._shared_last:
            return True
        shared = self._shared
        return all(generation >= shared.get(kind, 0) for kind in reads)

    # ------------------------------------------------------------------ entries

    def get(self, key: Key) -> bytes | None:
        """The stored body for ``key`` if it is still valid, else None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if not self._current(entry.organisation_id, entry.reads, entry.generation) or (
            self._clock() >= entry.expires
        ):
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry.body

    def ticket(self) -> Ticket:
        return Ticket(self._generation, self._clock())

    def put(self, key: Key, ticket: Ticket, body: bytes) -> bool:
        """Store ``body`` computed since ``ticket``, unless its organisation or shared data it
        read changed meanwhile (the body may predate the change), its document must not be
        cached, or it is too large. True if stored."""
        organisation_id, reads = key[0], key[7]
        if reads is None or not self._current(organisation_id, reads, ticket.generation):
            return False
        size = len(body) + len(key[4]) + len(key[5] or "") + len(key[6]) + ENTRY_OVERHEAD
        if size > self.max_bytes // LARGEST_ENTRY_SHARE:
            return False
        if key in self._entries:
            self._drop(key)
        self._entries[key] = _Entry(
            organisation_id, reads, ticket.generation, ticket.started + self.ttl, body, size
        )
        self._bytes += size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.size
        return True

    def _drop(self, key: Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry.size


__all__ = [
    "MAX_DOCUMENT_CHARS",
    "TOKEN_SCOPED_FIELDS",
    "Key",
    "Operation",
    "OperationIndex",
    "Reads",
    "ResponseCache",
    "Ticket",
    "TokenCache",
    "analyse",
    "request_key",
]
