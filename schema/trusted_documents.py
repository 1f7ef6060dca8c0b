"""The validation rule of trusted-documents mode: a document runs only if it is listed.

A rule rather than a check in each transport, so that it holds over HTTP, in batches and on
both WebSocket protocols alike; the validation cache keeps its verdict per document.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from typing import Any

from graphql import DocumentNode, GraphQLError, ValidationRule

NOT_IN_LIST = "PERSISTED_QUERY_NOT_IN_LIST"
MESSAGE = "This document is not one of the service's trusted documents."


def trusted_documents_only(digests: Collection[str]) -> type[ValidationRule]:
    """A rule refusing every document whose text's SHA-256 (hex) is not in ``digests``."""
    allowed = frozenset(digests)

    class TrustedDocumentsOnly(ValidationRule):
        def enter_document(self, node: DocumentNode, *_: Any) -> None:
            source = node.loc.source.body if node.loc is not None else None
            if source is None or hashlib.sha256(source.encode()).hexdigest() not in allowed:
                self.report_error(GraphQLError(MESSAGE, extensions={"code": NOT_IN_LIST}))

    return TrustedDocumentsOnly
