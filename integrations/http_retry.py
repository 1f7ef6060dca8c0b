"""Retries shared by the clients of external parties (stores, warehouses).

Transient failures — timeouts, connection errors (refused or dropped), HTTP 429 and 5xx — are
retried with exponential backoff (at least ``Retry-After``, capped); anything else is not. The
request is sent again unchanged, so its idempotency key makes a retry safe.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

logger = logging.getLogger(__name__)

MAX_RETRY_AFTER = 30.0
RETRIED_EXCEPTIONS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


E = TypeVar("E", bound=Exception)


def is_transient(status: int) -> bool:
    return status == 429 or status >= 500


def retry_after(response: httpx.Response) -> float:
    try:
        return min(max(float(response.headers.get("Retry-After", 0)), 0.0), MAX_RETRY_AFTER)
    except ValueError:
        return 0.0


async def send_with_retries(
    http: httpx.AsyncClient,
    method: str,
    path: str,
    *,
    retries: int,
    backoff: float,
    failure: Callable[[str, bool], E],
    status_failure: Callable[[httpx.Response], E],
    redact: Callable[[str], str],
    label: str,
    on_attempt: Callable[[], None] | None = None,
    base_url: str = "",
    **kwargs: Any,
) -> httpx.Response:
    """A 2xx response, or the error of the last attempt (``failure(message, transient)`` for
    no answer, ``status_failure(response)`` for an error status; both carry ``transient``).
    The request goes to ``base_url + path``; messages name ``path`` only."""
    for attempt in range(retries + 1):
        if on_attempt is not None:
            on_attempt()
        try:
            response = await http.request(method, base_url + path, **kwargs)
        except RETRIED_EXCEPTIONS as exc:
            error = failure(
                redact(f"{method} {path}: {type(exc).__name__}: {exc}".rstrip(": ")), True
            )
            delay = backoff * 2**attempt
        except httpx.HTTPError as exc:
            raise failure(redact(f"{method} {path}: {type(exc).__name__}: {exc}"), False) from exc
        else:
            if response.is_success:
                return response
            error = status_failure(response)
            if not getattr(error, "transient", False):
                raise error
            delay = max(backoff * 2**attempt, retry_after(response))
        if attempt == retries:
            message = f"{getattr(error, 'message', error)} (after {attempt + 1} attempts)"
            error.message = message  # type: ignore[attr-defined]
            error.args = (message,)
            raise error
        logger.warning("%s %s; retrying in %.2fs", label, getattr(error, "message", error), delay)
        await asyncio.sleep(delay)
    raise AssertionError("unreachable")
