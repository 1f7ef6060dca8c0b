"""Requested costs by document text, operation name and variables, the most recent kept.

Clients send the same few documents: pricing the orders page takes ~50 us, a look-up here ~2.
Also prices a document given as text (a cached answer, a WebSocket subscription), parsing it
first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import orjson
from graphql import DocumentNode, GraphQLError, GraphQLSchema, parse

from service.limits.cost import requested_cost

PRICES_KEPT = 1024
LONGEST_KEPT = 16_384  # characters of document and variables; longer requests are priced anew

PriceKey = tuple[str, str | None, bytes]


class Prices:
    def __init__(self, schema: GraphQLSchema, *, max_tokens: int, size: int = PRICES_KEPT) -> None:
        self._schema = schema
        self._max_tokens = max_tokens
        self._size = size
        self._known: OrderedDict[PriceKey, int | None] = OrderedDict()

    def of(
        self,
        document: str,
        operation_name: str | None,
        variables: Mapping[str, Any] | None,
        *,
        parsed: DocumentNode | None = None,
    ) -> int | None:
        """The requested cost of the operation; None when the document does not parse or
        names no single operation (its execution reports that). ``parsed`` spares parsing the
        text again."""
        try:
            key = (document, operation_name, orjson.dumps(variables, option=orjson.OPT_SORT_KEYS))
        except TypeError:  # variables JSON cannot express: priced, not kept
            return self._price(document, operation_name, variables, parsed)
        found = self._known.get(key, self)
        if found is not self:
            self._known.move_to_end(key)
            return found  # type: ignore[return-value]
        price = self._price(document, operation_name, variables, parsed)
        if len(key[0]) + len(key[2]) <= LONGEST_KEPT:
            self._known[key] = price
            if len(self._known) > self._size:
                self._known.popitem(last=False)
        return price

    def _price(
        self,
        document: str,
        operation_name: str | None,
        variables: Mapping[str, Any] | None,
        parsed: DocumentNode | None,
    ) -> int | None:
        if parsed is None:
            try:
                parsed = parse(document, no_location=True, max_tokens=self._max_tokens)
            except (GraphQLError, RecursionError):
                return None
        return requested_cost(self._schema, parsed, operation_name, variables)
