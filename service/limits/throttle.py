"""The limits and what they decide: a token's bucket of query cost, and a bucket of requests per
client address for callers without a valid token.

``charge`` is called once per operation before it runs (``QueryCost``), and by the view for an
answer from the response cache: a document costing more than a bucket holds is refused
``MAX_COST_EXCEEDED``, one costing more than the token's bucket holds now ``THROTTLED`` with the
seconds until it would pass. ``admit_address`` is called for every request without a valid
token (none, unknown, expired, revoked).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graphql import DocumentNode, GraphQLError, GraphQLSchema

from integrations.bus.channel import events_channel
from service.limits.buckets import Buckets, MemoryBuckets, Take
from service.limits.cost import requested_cost
from service.limits.prices import Prices
from service.limits.redis_buckets import RedisBuckets
from service.settings import Settings

THROTTLED = "THROTTLED"
MAX_COST_EXCEEDED = "MAX_COST_EXCEEDED"
# keys of an HTTP request's ``scope["state"]``: the seconds after which a refused operation may
# be retried (the view answers 429), and the cost report of its operation
RETRY_AFTER_STATE = "supplygraph.retry_after"
COST_STATE = "supplygraph.cost"


@dataclass(frozen=True, slots=True)
class Limits:
    maximum: int  # points of a token's bucket, and the most one document may cost; 0: off
    restore_rate: float  # points a second; 0: off
    address_rate: float  # requests a second per address without a valid token; 0: off
    address_burst: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            maximum=settings.throttle_maximum_available,
            restore_rate=settings.throttle_restore_rate,
            address_rate=settings.anonymous_rate,
            address_burst=settings.anonymous_burst,
        )

    @property
    def costs(self) -> bool:
        return self.maximum > 0 and self.restore_rate > 0

    @property
    def addresses(self) -> bool:
        return self.address_rate > 0 and self.address_burst > 0


def seconds(value: float) -> float:
    """``retryAfter``: seconds rounded up to the millisecond."""
    return math.ceil(value * 1000) / 1000


def retry_after_header(value: float) -> str:
    """``Retry-After``: whole seconds, at least 1."""
    return str(max(1, math.ceil(value)))


@dataclass(frozen=True, slots=True)
class Charge:
    """The cost of one operation and what the bucket said; ``refusal`` is the error that
    answers it instead of its execution, if any."""

    report: dict[str, Any]  # ``extensions.cost``
    refusal: GraphQLError | None = None
    retry_after: float | None = None  # set when THROTTLED


class Throttle:
    def __init__(self, limits: Limits, buckets: Buckets, *, max_tokens: int = 3000) -> None:
        self.limits = limits
        self.buckets = buckets
        self._max_tokens = max_tokens
        self._prices: Prices | None = None

    @classmethod
    def of(cls, settings: Settings) -> Throttle:
        """The limits of ``settings``, their buckets in Redis when ``REDIS_URL`` is set."""
        buckets: Buckets = MemoryBuckets()
        limits = Limits.of(settings)
        if settings.redis_url and (limits.costs or limits.addresses):
            deployment = events_channel(settings.database_url).rsplit(".", 1)[-1]
            prefix = f"supplygraph:limits:{deployment}:"
            buckets = RedisBuckets(settings.redis_url, prefix=prefix)
        return cls(limits, buckets, max_tokens=settings.max_query_tokens)

    def price(
        self,
        schema: GraphQLSchema,
        document: str | None,
        operation_name: str | None,
        variables: Mapping[str, Any] | None,
        *,
        parsed: DocumentNode | None = None,
    ) -> int | None:
        """The requested cost of an operation (``service/limits/cost.py``), None when its
        document names no single operation."""
        if document is None:
            if parsed is None:
                return None
            return requested_cost(schema, parsed, operation_name, variables)
        if self._prices is None:
            self._prices = Prices(schema, max_tokens=self._max_tokens)
        return self._prices.of(document, operation_name, variables, parsed=parsed)

    async def charge(self, token_id: int | None, cost: int) -> Charge:
        """Take ``cost`` from the bucket of the token ``token_id``; None (no token) only checks
        the most one document may cost."""
        limits = self.limits
        if cost > limits.maximum:
            take = await self._take(token_id, 0)
            message = (
                f"Query cost is {cost}, which exceeds the single query max cost limit "
                f"({limits.maximum})."
            )
            error = GraphQLError(message, extensions={"code": MAX_COST_EXCEEDED})
            return Charge(self._report(cost, take), error)
        take = await self._take(token_id, cost)
        if take is None or take.taken:
            return Charge(self._report(cost, take))
        wait = seconds(take.retry_after)
        message = (
            f"Throttled: this query costs {cost} points and {math.floor(take.available)} of "
            f"{limits.maximum} are available ({limits.restore_rate:g} restored a second); "
            f"retry in {wait:g} s."
        )
        error = GraphQLError(message, extensions={"code": THROTTLED, "retryAfter": wait})
        return Charge(self._report(cost, take), error, wait)

    async def admit_address(self, address: str) -> float | None:
        """Count one request without a valid token from ``address``: None if it may go on,
        else the seconds until one would."""
        limits = self.limits
        take = await self.buckets.take(
            f"address:{address}", 1, capacity=limits.address_burst, rate=limits.address_rate
        )
        return None if take.taken else seconds(take.retry_after)

    async def close(self) -> None:
        await self.buckets.close()

    async def _take(self, token_id: int | None, cost: int) -> Take | None:
        if token_id is None:
            return None
        limits = self.limits
        return await self.buckets.take(
            f"token:{token_id}", cost, capacity=limits.maximum, rate=limits.restore_rate
        )

    def _report(self, cost: int, take: Take | None) -> dict[str, Any]:
        report: dict[str, Any] = {"requestedQueryCost": cost}
        if take is not None:
            report["throttleStatus"] = {
                "maximumAvailable": self.limits.maximum,
                "currentlyAvailable": math.floor(take.available),
                "restoreRate": self.limits.restore_rate,
            }
        return report


def anonymous_message(retry_after: float) -> str:
    """The message of a request refused by its address's limit."""
    return f"Too many requests without a valid token from this address; retry in {retry_after:g} s."
