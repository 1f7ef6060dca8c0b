"""``WarehouseClient``: calls a third-party warehouse's API (see ``protocol`` for the wire format).

Every call has a timeout. Transient failures (timeouts, refused or dropped connections, HTTP 429
and 5xx) are retried with exponential backoff and jitter (``integrations.http_retry``), each
retry with the same ``Idempotency-Key``, so a retry of a request whose answer was lost never
acts twice. Other 4xx are not retried.

Errors: ``WarehouseRefused`` (409: the warehouse said no, e.g. ``CANCEL_REFUSED``),
``WarehouseNotFound`` (404) and otherwise ``WarehouseApiError``, whose ``transient`` says whether
trying again later may succeed. A malformed success body is a non-transient ``WarehouseApiError``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

import httpx

from integrations.http_retry import is_transient, send_with_retries
from integrations.outbound import new_client
from integrations.warehouses.protocol import (
    HEADER_API_KEY,
    HEADER_IDEMPOTENCY_KEY,
    PATH_INBOUND_RETURNS,
    PATH_OUTBOUND_CANCELLATIONS,
    PATH_OUTBOUND_ORDERS,
    PATH_PING,
    CancellationResult,
    OutboundItem,
    OutboundOrderRequest,
    Recipient,
    ReturnItem,
    ReturnRequest,
    WarehouseOrder,
    WarehousePayloadError,
    WarehouseReturn,
    cancellations_body,
    check_idempotency_key,
    check_reference,
    parse_cancellations,
    parse_error,
    parse_order,
    parse_return,
)

__all__ = [
    "CancellationsNotOffered",
    "WarehouseApiError",
    "WarehouseClient",
    "WarehouseNotFound",
    "WarehouseRefused",
]


_T = TypeVar("_T", WarehouseOrder, WarehouseReturn)


class WarehouseApiError(Exception):
    """A warehouse API call that failed. ``transient``: trying again later may succeed.

    ``status`` is the last HTTP status (None if no answer came), ``code`` the protocol's error
    code when the warehouse sent one.
    """

    def __init__(
        self, message: str, *, transient: bool, status: int | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient
        self.status = status
        self.code = code


class WarehouseNotFound(WarehouseApiError):
    """HTTP 404: the warehouse has no order or return with that reference."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message, transient=False, status=404, code=code)


class WarehouseRefused(WarehouseApiError):
    """HTTP 409: the warehouse refused, e.g. ``CANCEL_REFUSED`` once an order is being picked."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}", transient=False, status=409, code=code)
        self.reason = message


class CancellationsNotOffered(WarehouseApiError):
    """The warehouse does not offer the optional cancellations endpoint (it answered 404 or
    405 there): cancel order by order."""

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=False, status=404)


class WarehouseClient:
    """An async client of one warehouse. Use as ``async with WarehouseClient(...) as wh:``.

    ``attempts`` counts the HTTP requests sent so far (retries included). ``retries``: retries
    of a call after a transient failure; ``budget``: seconds after the first attempt of a call
    past which no retry is scheduled (None: the retries alone bound it). With ``http``, requests
    go through that shared ``httpx.AsyncClient`` (its connection pool outlives this object and
    is not closed by it); without, the client makes and closes its own. ``before_attempt`` is
    called before each attempt and once more when an answer is in, and may raise to stop the
    call (a worker whose lease lapsed: what the call brought is no longer its to apply).
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.2,
        budget: float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        http: httpx.AsyncClient | None = None,
        before_attempt: Callable[[], None] | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("api_key is required")
        if retries < 0 or backoff < 0 or timeout <= 0 or (budget is not None and budget <= 0):
            raise ValueError("retries and backoff must be >= 0, timeout and budget > 0")
        self._key = api_key
        self._retries = retries
        self._backoff = backoff
        self._budget = budget
        self._before_attempt = before_attempt
        self.attempts = 0
        self._base_url = base_url.rstrip("/")
        self._headers = {HEADER_API_KEY: api_key, "Accept": "application/json"}
        self._timeout = httpx.Timeout(timeout)
        self._owns_http = http is None
        self._http = http or new_client(transport=transport)

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
        if self._owns_http:
            await self._http.aclose()

    async def ping(self) -> str:
        """Check the connection and credentials; returns the warehouse's name."""
        data = await self._request("GET", PATH_PING)
        name = data.get("warehouse")
        if data.get("ok") is not True or not isinstance(name, str) or not name.strip():
            raise self._malformed("GET", PATH_PING, 'expected {"ok": true, "warehouse": name}')
        return name.strip()

    async def create_outbound_order(
        self,
        *,
        reference: str,
        recipient: Recipient,
        items: Sequence[OutboundItem],
        callback_url: str | None = None,
        idempotency_key: str,
    ) -> WarehouseOrder:
        """Push a fulfilment order; an existing ``reference`` returns the existing order."""
        request = OutboundOrderRequest(reference, recipient, tuple(items), callback_url)
        return await self._post(
            PATH_OUTBOUND_ORDERS, request.to_json(), idempotency_key, reference, parse_order
        )

    async def get_outbound_order(self, reference: str) -> WarehouseOrder:
        """The order; ``WarehouseNotFound`` if the warehouse does not have it."""
        path = f"{PATH_OUTBOUND_ORDERS}/{_segment(reference)}"
        return self._parse("GET", path, await self._request("GET", path), reference, parse_order)

    async def cancel_outbound_order(
        self, reference: str, *, idempotency_key: str
    ) -> WarehouseOrder:
        """Cancel; ``WarehouseRefused`` (``CANCEL_REFUSED``) once picking has started."""
        path = f"{PATH_OUTBOUND_ORDERS}/{_segment(reference)}/cancel"
        return await self._post(path, {}, idempotency_key, reference, parse_order)

    async def cancel_outbound_orders(
        self, references: Sequence[str], *, idempotency_key: str
    ) -> list[WarehouseOrder | WarehouseApiError]:
        """Cancel several orders in one request (the protocol's optional cancellations
        endpoint): per reference, in order, the order or the error the per-order cancel would
        have raised (``WarehouseRefused``, ``WarehouseNotFound``...). Raises for the request as
        a whole; ``CancellationsNotOffered`` where the warehouse does not offer it."""
        asked = list(references)
        path = PATH_OUTBOUND_CANCELLATIONS
        headers = {HEADER_IDEMPOTENCY_KEY: check_idempotency_key(idempotency_key)}
        try:
            data = await self._request(
                "POST", path, json=cancellations_body(asked), headers=headers
            )
        except WarehouseApiError as error:
            if error.status in (404, 405):
                raise CancellationsNotOffered(error.message) from None
            raise
        try:
            results = parse_cancellations(data, asked)
        except WarehousePayloadError as error:
            raise self._malformed("POST", path, str(error)) from None
        return [self._cancellation(path, result) for result in results]

    def _cancellation(
        self, path: str, result: CancellationResult
    ) -> WarehouseOrder | WarehouseApiError:
        if result.order is not None:
            return result.order
        detail = self._redact(result.message)
        if result.status == 409:
            return WarehouseRefused(result.code or "CONFLICT", detail)
        where = f"POST {path} {result.reference}: HTTP {result.status}"
        message = self._redact(
            where + (f" {result.code}" if result.code else "") + (f": {detail}" if detail else "")
        )
        if result.status == 404:
            return WarehouseNotFound(message, code=result.code)
        return WarehouseApiError(
            message, transient=is_transient(result.status), status=result.status, code=result.code
        )

    async def create_return(
        self,
        *,
        reference: str,
        items: Sequence[ReturnItem],
        original_reference: str | None = None,
        callback_url: str | None = None,
        idempotency_key: str,
    ) -> WarehouseReturn:
        """Announce a return for stock-in; an existing ``reference`` returns the existing one."""
        request = ReturnRequest(reference, tuple(items), original_reference, callback_url)
        return await self._post(
            PATH_INBOUND_RETURNS, request.to_json(), idempotency_key, reference, parse_return
        )

    async def get_return(self, reference: str) -> WarehouseReturn:
        """The return; ``WarehouseNotFound`` if the warehouse does not have it."""
        path = f"{PATH_INBOUND_RETURNS}/{_segment(reference)}"
        return self._parse("GET", path, await self._request("GET", path), reference, parse_return)

    async def cancel_return(self, reference: str, *, idempotency_key: str) -> WarehouseReturn:
        """Cancel; ``WarehouseRefused`` (``CANCEL_REFUSED``) once the goods were received."""
        path = f"{PATH_INBOUND_RETURNS}/{_segment(reference)}/cancel"
        return await self._post(path, {}, idempotency_key, reference, parse_return)

    async def _post(
        self,
        path: str,
        body: dict[str, Any],
        idempotency_key: str,
        reference: str,
        parse: Callable[[Any], _T],
    ) -> _T:
        headers = {HEADER_IDEMPOTENCY_KEY: check_idempotency_key(idempotency_key)}
        data = await self._request("POST", path, json=body, headers=headers)
        return self._parse("POST", path, data, reference, parse)

    def _parse(
        self,
        method: str,
        path: str,
        data: dict[str, Any],
        reference: str,
        parse: Callable[[Any], _T],
    ) -> _T:
        try:
            result = parse(data)
        except WarehousePayloadError as error:
            raise self._malformed(method, path, str(error)) from None
        if result.reference != reference:
            raise self._malformed(method, path, f"answered for reference {result.reference!r}")
        return result

    def _malformed(self, method: str, path: str, detail: str) -> WarehouseApiError:
        message = f"{method} {path}: malformed response: {detail}"
        return WarehouseApiError(self._redact(message), transient=False)

    async def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """Send with retries; returns the JSON object of a 2xx response."""
        headers = {**self._headers, **kwargs.pop("headers", {})}
        response = await send_with_retries(
            self._http,
            method,
            path,
            base_url=self._base_url,
            headers=headers,
            timeout=self._timeout,
            retries=self._retries,
            backoff=self._backoff,
            budget=self._budget,
            failure=lambda message, transient: WarehouseApiError(message, transient=transient),
            status_failure=lambda r: self._status_error(method, path, r),
            redact=self._redact,
            label="warehouse API",
            on_attempt=self._count_attempt,
            **kwargs,
        )
        if self._before_attempt is not None:
            self._before_attempt()
        return self._json(method, path, response)

    def _count_attempt(self) -> None:
        if self._before_attempt is not None:
            self._before_attempt()
        self.attempts += 1

    def _status_error(self, method: str, path: str, response: httpx.Response) -> WarehouseApiError:
        status = response.status_code
        try:
            parsed = parse_error(response.json())
        except ValueError:
            parsed = None
        # only an error in the warehouse protocol's shape is shown, never a body as it came
        code, detail = parsed or (None, "")
        if status == 409:
            return WarehouseRefused(code or "CONFLICT", self._redact(detail))
        where = f"{method} {path}: HTTP {status}"
        if status in (401, 403):
            message = f"{where}: the warehouse refused the API key"
        else:
            message = where + (f" {code}" if code else "") + (f": {detail}" if detail else "")
        if status == 404:
            return WarehouseNotFound(self._redact(message), code=code)
        transient = is_transient(status)
        return WarehouseApiError(
            self._redact(message), transient=transient, status=status, code=code
        )

    def _json(self, method: str, path: str, response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            raise self._malformed(method, path, "not JSON") from None
        if not isinstance(data, dict):
            raise self._malformed(method, path, "not a JSON object")
        return data

    def _redact(self, message: str) -> str:
        return message.replace(self._key, "***")


def _segment(reference: str) -> str:
    """A valid reference as a URL path segment (raises ``ValueError`` for an invalid one)."""
    return quote(check_reference(reference), safe="")
