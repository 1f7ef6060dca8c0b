"""Retries shared by the clients of external parties (stores, warehouses), on ``stamina``.

Transient failures (timeouts, network errors such as refused or dropped connections, remote
protocol errors, HTTP 429 and 5xx) are retried; anything else is raised at once. The request is
sent again unchanged, so its idempotency key makes a retry safe.

The wait before retry ``n`` is stamina's exponential backoff with jitter: ``backoff * 2**(n-1)``
plus up to ``backoff`` at random, at most ``MAX_BACKOFF``; after an answer with ``Retry-After``
it is at least that (at most ``MAX_RETRY_AFTER``). With a ``budget`` (stamina's ``timeout``),
no retry is scheduled once that many seconds have passed since the first attempt, however many
retries are left. Each retry is logged as a warning by a stamina instrumentation hook (the
stdlib logger of this module), naming the call, what failed and the wait.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import stamina
from stamina.instrumentation import RetryDetails, set_on_retry_hooks

logger = logging.getLogger(__name__)

MAX_RETRY_AFTER = 30.0
MAX_BACKOFF = 10.0  # longer outages are the callers' to wait out (a task runs again later)
RETRIED_EXCEPTIONS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


E = TypeVar("E", bound=Exception)


def is_transient(status: int) -> bool:
    return status == 429 or status >= 500


def retry_after(response: httpx.Response) -> float:
    try:
        return min(max(float(response.headers.get("Retry-After", 0)), 0.0), MAX_RETRY_AFTER)
    except ValueError:
        return 0.0


@dataclass(repr=False, eq=False)  # its own repr: the headers carry credentials
class _Call:
    """One request and its attempts so far: what stamina retries, and what its retry hook
    and backoff hook look at."""

    http: httpx.AsyncClient
    method: str
    path: str
    url: str
    kwargs: dict[str, Any]
    failure: Callable[[str, bool], Exception]
    status_failure: Callable[[httpx.Response], Exception]
    redact: Callable[[str], str]
    label: str
    on_attempt: Callable[[], None] | None
    backoff: float
    attempts: int = 0
    retry_after: float = 0.0  # asked for by the last answer

    def __repr__(self) -> str:
        return f"<{self.label} call {self.method} {self.path}>"

    def wait(self, error: Exception) -> bool | float:
        """stamina's backoff hook: False (raise) for an error that is not transient; the
        answer's ``Retry-After`` where it asks for more than the backoff would wait at least;
        otherwise True (stamina's backoff)."""
        if not getattr(error, "transient", False):
            return False
        least = min(self.backoff * 2 ** (self.attempts - 1), MAX_BACKOFF)
        return self.retry_after if self.retry_after > least else True


async def _attempt(call: _Call) -> httpx.Response:
    """Send the request once: a 2xx response, or the error (``transient`` set) it makes."""
    call.attempts += 1
    call.retry_after = 0.0
    if call.on_attempt is not None:
        call.on_attempt()
    try:
        response = await call.http.request(call.method, call.url, **call.kwargs)
    except RETRIED_EXCEPTIONS as exc:
        detail = f"{call.method} {call.path}: {type(exc).__name__}: {exc}".rstrip(": ")
        raise call.failure(call.redact(detail), True) from exc
    except httpx.HTTPError as exc:
        detail = f"{call.method} {call.path}: {type(exc).__name__}: {exc}"
        raise call.failure(call.redact(detail), False) from exc
    if response.is_success:
        return response
    call.retry_after = retry_after(response)
    raise call.status_failure(response)


def _log_retry(details: RetryDetails) -> None:
    """stamina's retry hook: one warning per retry, naming the call, what failed, the wait."""
    call = details.args[0] if details.args else None
    error = details.caused_by
    if isinstance(call, _Call):
        what = f"{call.label} {getattr(error, 'message', error)}"
    else:  # another user of stamina in this process
        what = f"{details.name}: {type(error).__name__}: {error}"
    logger.warning("%s; retrying in %.2fs", what, details.wait_for)


set_on_retry_hooks([_log_retry])


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
    budget: float | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """A 2xx response, or the error of the last attempt (``failure(message, transient)`` for
    no answer, ``status_failure(response)`` for an error status; both carry ``transient``).

    ``retries``: retries after the first attempt; ``budget``: seconds after which no retry is
    scheduled (None: no bound). A transient error that ends the call says how many attempts
    were made (``(after N attempts)``). The request goes to ``base_url + path``; messages name
    ``path`` only. ``on_attempt`` is called before each attempt."""
    call = _Call(
        http,
        method,
        path,
        base_url + path,
        kwargs,
        failure,
        status_failure,
        redact,
        label,
        on_attempt,
        backoff,
    )
    # decorated per call: the backoff hook is the call's, and stamina hands the retry hook the
    # decorated function's arguments (the call), which a retry_context block would not get
    attempt = stamina.retry(
        on=call.wait,
        attempts=retries + 1,
        timeout=budget,
        wait_initial=backoff,
        wait_max=MAX_BACKOFF,
        wait_jitter=backoff,
        wait_exp_base=2,
    )(_attempt)
    try:
        return await attempt(call)
    except Exception as error:
        if getattr(error, "transient", False):
            message = f"{getattr(error, 'message', error)} (after {call.attempts} attempts)"
            error.message = message  # type: ignore[attr-defined]
            error.args = (message,)
        raise
