"""Persisted documents: automatic persisted queries (Apollo's protocol) and trusted documents.

**Automatic persisted queries.** A client sends ``extensions.persistedQuery`` =
``{"version": 1, "sha256Hash": "<hex>"}`` without the document; if this service has seen that
document it runs it, otherwise it answers ``PERSISTED_QUERY_NOT_FOUND`` and the client sends
hash and document together, which are checked against each other and kept. Kept in Redis when
``REDIS_URL`` is set (shared by every instance, each entry expiring ``PERSISTED_QUERY_TTL``
after its last registration), otherwise in this process's memory (the most recent
``PERSISTED_QUERY_ENTRIES``). A store that fails (Redis down) is a miss: the client sends the
document, as on a first request.

**Trusted documents.** With ``TRUSTED_DOCUMENTS`` (a manifest: Apollo's
``persisted-query-manifest.json`` or Relay's ``{"<id>": "<document>"}``) the service runs only
the documents listed there: the client sends their id (``extensions.persistedQuery.sha256Hash``,
``documentId`` or Relay's ``doc_id``) or the document itself, and anything else is refused with
``PERSISTED_QUERY_NOT_IN_LIST`` (a validation rule, so it holds over HTTP, batches and both
WebSocket protocols alike; ``schema/build.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from redis.asyncio import Redis

log = logging.getLogger(__name__)

NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
NOT_IN_LIST = "PERSISTED_QUERY_NOT_IN_LIST"
BAD_REQUEST = "BAD_REQUEST"
# Apollo's clients recognise the miss by this message (and by the code)
NOT_FOUND_MESSAGE = "PersistedQueryNotFound"
NOT_IN_LIST_MESSAGE = "This document is not one of the service's trusted documents."
_SHA256 = re.compile(r"[0-9a-f]{64}")


def sha256(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()


class PersistedDocumentError(Exception):
    """A request whose persisted document cannot be resolved: a request error with ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class DocumentStore(Protocol):
    async def get(self, digest: str) -> str | None: ...

    async def put(self, digest: str, document: str) -> None: ...


class MemoryDocuments:
    """The most recently registered ``max_entries`` documents of this process."""

    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._documents: OrderedDict[str, str] = OrderedDict()

    async def get(self, digest: str) -> str | None:
        document = self._documents.get(digest)
        if document is not None:
            self._documents.move_to_end(digest)
        return document

    async def put(self, digest: str, document: str) -> None:
        self._documents[digest] = document
        self._documents.move_to_end(digest)
        while len(self._documents) > self._max:
            self._documents.popitem(last=False)

    def __len__(self) -> int:
        return len(self._documents)


class RedisDocuments:
    """Documents shared by every instance, each expiring ``ttl`` seconds after it was last
    registered. A Redis failure is a miss (get) or a no-op (put), logged."""

    def __init__(self, url: str, *, ttl: int, prefix: str = "supplygraph:apq:") -> None:
        self._redis: Redis = Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        self._ttl = ttl
        self._prefix = prefix

    async def get(self, digest: str) -> str | None:
        try:
            value = await self._redis.get(self._prefix + digest)
        except Exception as error:  # the store is a cache: the client resends the document
            log.warning("persisted documents: Redis read failed: %s", error)
            return None
        return value.decode() if value is not None else None

    async def put(self, digest: str, document: str) -> None:
        try:
            await self._redis.set(self._prefix + digest, document, ex=self._ttl)
        except Exception as error:
            log.warning("persisted documents: Redis write failed: %s", error)

    async def close(self) -> None:
        await self._redis.aclose()


def load_manifest(path: Path) -> dict[str, str]:
    """Trusted documents by id, from Apollo's persisted-query manifest or Relay's id → text
    map. Every document is also listed under its SHA-256 (hex, and ``sha256:<hex>``)."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    documents: dict[str, str] = {}
    if isinstance(raw, dict) and raw.get("format") == "apollo-persisted-query-manifest":
        for operation in raw.get("operations", []):
            documents[str(operation["id"])] = str(operation["body"])
    elif isinstance(raw, dict) and all(isinstance(v, str) for v in raw.values()):
        documents = {str(k): v for k, v in raw.items()}
    else:
        raise ValueError(f"{path}: neither an Apollo persisted-query manifest nor an id map")
    for document in list(documents.values()):
        digest = sha256(document)
        documents[digest] = document
        documents[f"sha256:{digest}"] = document
    return documents


@dataclass(frozen=True, slots=True)
class DocumentRef:
    """The members of one operation that name its document."""

    query: object
    extensions: object
    document_id: object  # ``documentId`` or Relay's ``doc_id``

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> DocumentRef:
        return cls(
            data.get("query"),
            data.get("extensions"),
            data.get("documentId", data.get("doc_id")),
        )

    @property
    def names_a_document(self) -> bool:
        """Whether the document is named by an id rather than (only) sent."""
        persisted = isinstance(self.extensions, dict) and "persistedQuery" in self.extensions
        return persisted or self.document_id is not None


class PersistedDocuments:
    """Resolves the document of an operation that names one (``resolve``)."""

    def __init__(self, store: DocumentStore | None, trusted: Mapping[str, str] | None) -> None:
        self.store = store  # None: automatic persisted queries are off
        self.trusted = trusted
        self.trusted_digests = (
            frozenset(sha256(d) for d in trusted.values()) if trusted is not None else None
        )

    async def resolve(self, request: DocumentRef) -> str | None:
        """The document to run: the one sent, or the one its id names. Raises
        ``PersistedDocumentError`` for an unknown id, a hash that does not match, or a
        malformed ``persistedQuery``."""
        if request.document_id is not None:
            return self._listed(request.document_id)
        extensions = request.extensions
        persisted = extensions.get("persistedQuery") if isinstance(extensions, dict) else None
        if persisted is None:
            return request.query if isinstance(request.query, str) else None
        digest = _digest(persisted)
        if isinstance(request.query, str):
            if sha256(request.query) != digest:
                raise PersistedDocumentError(BAD_REQUEST, "provided sha does not match query")
            if self.store is not None and self.trusted is None:
                await self.store.put(digest, request.query)
            return request.query
        if self.trusted is not None:
            return self._listed(digest)
        if self.store is None:
            raise PersistedDocumentError(
                "PERSISTED_QUERY_NOT_SUPPORTED", "PersistedQueryNotSupported"
            )
        document = await self.store.get(digest)
        if document is None:
            raise PersistedDocumentError(NOT_FOUND, NOT_FOUND_MESSAGE)
        return document

    def _listed(self, document_id: object) -> str:
        if not isinstance(document_id, str) or self.trusted is None:
            raise PersistedDocumentError(NOT_FOUND, NOT_FOUND_MESSAGE)
        document = self.trusted.get(document_id)
        if document is None:
            raise PersistedDocumentError(NOT_FOUND, NOT_FOUND_MESSAGE)
        return document


def _digest(persisted: object) -> str:
    if not isinstance(persisted, dict) or persisted.get("version") != 1:
        raise PersistedDocumentError(
            BAD_REQUEST, "`extensions.persistedQuery` must be {version: 1, sha256Hash}."
        )
    digest = persisted.get("sha256Hash")
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
        raise PersistedDocumentError(
            BAD_REQUEST, "`sha256Hash` must be 64 lower-case hexadecimal digits."
        )
    return digest
