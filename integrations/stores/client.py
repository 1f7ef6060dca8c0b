"""``StoreClient``: calls a buyer's store API (see ``protocol`` for the wire format).

Every call has a timeout. Transient failures (connection errors, timeouts, HTTP 429 and 5xx) are
retried with exponential backoff and jitter (``integrations.http_retry``); other 4xx are not. A
fulfillment carries an idempotency key, so retrying one whose response was lost does not ship
twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, Self

import httpx

from domain.stores.data import StoreOrderData, StoreProductData
from integrations.http_retry import is_transient, send_with_retries
from integrations.outbound import new_client
from integrations.stores.protocol import (
    API_PREFIX,
    HEADER_ACCESS_TOKEN,
    HEADER_IDEMPOTENCY_KEY,
    MAX_PAGE_SIZE,
    StorePayloadError,
    parse_id,
    parse_order,
    parse_product,
)

__all__ = ["StoreApiError", "StoreClient"]


class StoreApiError(Exception):
    """A store API call that failed. ``transient``: trying again later may succeed."""

    def __init__(self, message: str, *, transient: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient
        self.status = status


class StoreClient:
    """An async client of one store. Use as ``async with StoreClient(...) as store:``.

    ``retries``: retries of a call after a transient failure; ``budget``: seconds after the
    first attempt of a call past which no retry is scheduled (None: the retries alone bound it).
    ``before_attempt`` is called before each attempt and may raise to stop the call (a pusher
    whose lease lapsed).
    """

    def __init__(
        self,
        *,
        base_url: str,
        access_token: str,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.2,
        budget: float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        before_attempt: Callable[[], None] | None = None,
    ) -> None:
        if not access_token:
            raise ValueError("access_token is required")
        if retries < 0 or backoff < 0 or timeout <= 0 or (budget is not None and budget <= 0):
            raise ValueError("retries and backoff must be >= 0, timeout and budget > 0")
        self._token = access_token
        self._retries = retries
        self._backoff = backoff
        self._budget = budget
        self._before_attempt = before_attempt
        self._http = new_client(
            base_url=base_url.rstrip("/"),
            headers={HEADER_ACCESS_TOKEN: access_token, "Accept": "application/json"},
            timeout=httpx.Timeout(timeout),
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def list_orders(
        self, *, since_id: str | None = None, limit: int = 100
    ) -> list[StoreOrderData]:
        """One page: at most ``limit`` orders with an id above ``since_id``, by id ascending."""
        items = await self._list("orders", since_id=since_id, limit=limit)
        return [parse_order(item) for item in items]

    async def iter_all_orders(
        self, *, since_id: str | None, limit: int = 100
    ) -> AsyncIterator[StoreOrderData]:
        """Every order with an id above ``since_id``, page by page until a short page."""
        async for item in self._pages("orders", since_id=since_id, limit=limit):
            yield parse_order(item)

    async def list_products(self, *, limit: int = 100) -> list[StoreProductData]:
        """All products of the store (every page)."""
        return [parse_product(item) async for item in self._pages("products", limit=limit)]

    async def create_fulfillment(
        self, *, order_id: str, carrier: str, tracking_number: str, idempotency_key: str
    ) -> str:
        """Push carrier and tracking number to the store; returns the store's fulfillment id.

        Calls with the same ``idempotency_key`` create one fulfillment.
        """
        if not (carrier.strip() and tracking_number.strip() and idempotency_key.strip()):
            raise ValueError("carrier, tracking_number and idempotency_key are required")
        order = parse_id(order_id, "order_id")
        path = f"{API_PREFIX}/orders/{order}/fulfillments.json"
        body = {
            "fulfillment": {
                "tracking_company": carrier.strip(),
                "tracking_number": tracking_number.strip(),
                "notify_customer": True,
            }
        }
        data = await self._request(
            "POST", path, json=body, headers={HEADER_IDEMPOTENCY_KEY: idempotency_key}
        )
        fulfillment = data.get("fulfillment")
        if not isinstance(fulfillment, dict) or "id" not in fulfillment:
            raise StorePayloadError(f"POST {path}: response has no fulfillment id")
        return parse_id(fulfillment["id"], "fulfillment.id")

    async def _pages(
        self, kind: str, *, since_id: str | None = None, limit: int
    ) -> AsyncIterator[dict[str, Any]]:
        cursor = since_id
        while True:
            items = await self._list(kind, since_id=cursor, limit=limit)
            for item in items:
                yield item
            if len(items) < limit:
                return
            last = max(int(parse_id(item.get("id"), f"{kind}.id")) for item in items)
            if cursor is not None and last <= int(cursor):
                raise StoreApiError(
                    f"GET {kind}: the store ignored since_id={cursor} (paging would not end)",
                    transient=False,
                )
            cursor = str(last)

    async def _list(self, kind: str, *, since_id: str | None, limit: int) -> list[dict[str, Any]]:
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}")
        params: dict[str, str | int] = {"limit": limit}
        if since_id is not None:
            params["since_id"] = parse_id(since_id, "since_id")
        path = f"{API_PREFIX}/{kind}.json"
        items = (await self._request("GET", path, params=params)).get(kind)
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise StorePayloadError(f"GET {path}: expected {{{kind!r}: [objects]}}")
        return items

    async def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """Send with retries; returns the JSON object of a 2xx response."""
        response = await send_with_retries(
            self._http,
            method,
            path,
            retries=self._retries,
            backoff=self._backoff,
            budget=self._budget,
            failure=lambda message, transient: StoreApiError(message, transient=transient),
            status_failure=lambda r: self._status_error(method, path, r),
            redact=self._redact,
            label="store API",
            on_attempt=self._before_attempt,
            **kwargs,
        )
        return self._json(method, path, response)

    def _status_error(self, method: str, path: str, response: httpx.Response) -> StoreApiError:
        status = response.status_code
        if status in (401, 403):
            message = f"{method} {path}: the store refused the credentials (HTTP {status})"
        else:
            detail = _protocol_error(response)
            message = f"{method} {path}: HTTP {status}" + (f": {detail}" if detail else "")
        return StoreApiError(self._redact(message), transient=is_transient(status), status=status)

    def _json(self, method: str, path: str, response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            raise StorePayloadError(f"{method} {path}: the response is not JSON") from None
        if not isinstance(data, dict):
            raise StorePayloadError(f"{method} {path}: the response is not a JSON object")
        return data

    def _redact(self, message: str) -> str:
        return message.replace(self._token, "***")


def _protocol_error(response: httpx.Response) -> str:
    """The store's reason when the body is the protocol's error (``{"errors": "..."}``),
    shortened; nothing otherwise: a body as it came is never shown."""
    try:
        errors = response.json().get("errors")
    except (ValueError, AttributeError):
        return ""
    return errors.strip()[:200] if isinstance(errors, str) else ""
