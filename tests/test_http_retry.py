"""Retries of calls to external parties (``integrations.http_retry``, on stamina), against
scripted answers (``httpx.MockTransport``): what is retried and what is raised at once, the
waits computed between attempts (recorded in place of being slept), the error that ends a call,
the attempts counted, the log of each retry, and the budget.

The integration tests (stores, warehouses, faults) run the same code against the simulators.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
import stamina
from stamina.instrumentation import LoggingOnRetryHook, get_on_retry_hooks, set_on_retry_hooks

from integrations import http_retry
from integrations.http_retry import MAX_BACKOFF, MAX_RETRY_AFTER, send_with_retries
from integrations.outbound import OutboundRefused
from integrations.stores import StoreApiError, StoreClient
from integrations.warehouses.client import WarehouseApiError, WarehouseClient

BASE_URL = "http://party.test"
SECRET = "s3cr3t-key"
Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


class Failed(Exception):
    """The error the scripted caller makes (as a client's error: message and ``transient``)."""

    def __init__(self, message: str, *, transient: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient
        self.status = status


class Party:
    """A scripted external party and a caller of it: the requests it got, the attempts the
    caller counted."""

    def __init__(self, *answers: httpx.Response | Exception, handler: Handler | None = None):
        self.requests: list[httpx.Request] = []
        self.attempts = 0
        self.attempts_seen: list[int] = []  # ``attempts`` as each request arrived
        self._answers = list(answers)
        self._handler = handler

    async def answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.attempts_seen.append(self.attempts)
        if self._handler is not None:
            answer = self._handler(request)
            return await answer if inspect.isawaitable(answer) else answer
        answer = self._answers.pop(0) if len(self._answers) > 1 else self._answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def count(self) -> None:
        self.attempts += 1

    async def call(
        self, *, retries: int = 2, backoff: float = 0.01, budget: float | None = None
    ) -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.MockTransport(self.answer)) as http:
            return await send_with_retries(
                http,
                "GET",
                "/v1/orders",
                base_url=BASE_URL,
                retries=retries,
                backoff=backoff,
                budget=budget,
                failure=lambda message, transient: Failed(message, transient=transient),
                status_failure=_status_failure,
                redact=lambda message: message.replace(SECRET, "***"),
                label="party API",
                on_attempt=self.count,
                headers={"X-Api-Key": SECRET},
            )


def _status_failure(response: httpx.Response) -> Failed:
    status = response.status_code
    return Failed(
        f"GET /v1/orders: HTTP {status}", transient=http_retry.is_transient(status), status=status
    )


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits stamina computes before each retry, recorded instead of slept: its one sleep
    (``stamina._core._smart_sleep``, of the pinned version) stands in; stamina's testing mode
    would make every wait 0."""
    recorded: list[float] = []

    async def sleep(seconds: float) -> None:
        recorded.append(seconds)
        await asyncio.sleep(0)

    monkeypatch.setattr(stamina._core, "_smart_sleep", sleep)
    return recorded


@pytest.fixture
def no_waits() -> Iterator[None]:
    """stamina's testing mode: no backoff, the attempts each call asks for (capped far above)."""
    with stamina.set_testing(True, attempts=1000, cap=True):
        yield


# --- what is retried ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
async def test_transient_statuses_are_retried(status: int, waits: list[float]) -> None:
    party = Party(httpx.Response(status), httpx.Response(200, json={"ok": True}))
    response = await party.call()
    assert response.json() == {"ok": True}
    assert (len(party.requests), party.attempts, len(waits)) == (2, 2, 1)


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("connection refused"),
        httpx.ConnectTimeout("connect timed out"),
        httpx.ReadTimeout("read timed out"),
        httpx.WriteTimeout("write timed out"),
        httpx.PoolTimeout("no connection free"),
        httpx.ReadError("connection reset"),
        httpx.WriteError("broken pipe"),
        httpx.RemoteProtocolError("server disconnected without sending a response"),
    ],
    ids=lambda error: type(error).__name__,
)
async def test_timeouts_network_and_protocol_errors_are_retried(
    error: Exception, no_waits: None
) -> None:
    party = Party(error, httpx.Response(200))
    assert (await party.call()).status_code == 200
    assert party.attempts == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 302])
async def test_other_statuses_are_raised_at_once(status: int, waits: list[float]) -> None:
    party = Party(httpx.Response(status))
    with pytest.raises(Failed) as caught:
        await party.call(retries=3)
    assert (caught.value.status, caught.value.transient) == (status, False)
    assert caught.value.message == f"GET /v1/orders: HTTP {status}"  # no "(after N attempts)"
    assert (party.attempts, waits) == (1, [])


@pytest.mark.parametrize(
    "error",
    [
        httpx.UnsupportedProtocol("no scheme"),
        httpx.LocalProtocolError("bad header"),
        httpx.TooManyRedirects("redirect loop"),
        OutboundRefused("the address is not on the public internet"),
    ],
    ids=lambda error: type(error).__name__,
)
async def test_other_http_errors_are_raised_at_once(error: Exception, waits: list[float]) -> None:
    party = Party(error)
    with pytest.raises(Failed) as caught:
        await party.call(retries=3)
    assert caught.value.transient is False
    assert caught.value.message == f"GET /v1/orders: {type(error).__name__}: {error}"
    assert isinstance(caught.value.__cause__, type(error))
    assert (party.attempts, waits) == (1, [])


async def test_an_error_that_is_not_http_is_raised_as_it_is(waits: list[float]) -> None:
    party = Party(RuntimeError("a bug in a transport"))
    with pytest.raises(RuntimeError, match="a bug in a transport"):
        await party.call(retries=3)
    assert (party.attempts, waits) == (1, [])


# --- the error that ends a call ----------------------------------------------------------------


async def test_the_last_error_says_how_many_attempts_were_made(no_waits: None) -> None:
    party = Party(httpx.Response(503))
    with pytest.raises(Failed) as caught:
        await party.call(retries=3)
    message = "GET /v1/orders: HTTP 503 (after 4 attempts)"
    assert (caught.value.message, caught.value.args) == (message, (message,))
    assert (caught.value.status, caught.value.transient) == (503, True)
    assert str(caught.value) == message
    assert len(party.requests) == party.attempts == 4

    party = Party(httpx.ReadTimeout(""))  # an exception without a message
    with pytest.raises(Failed, match=r"^GET /v1/orders: ReadTimeout \(after 2 attempts\)$"):
        await party.call(retries=1)


async def test_no_retries_is_one_attempt(no_waits: None) -> None:
    party = Party(httpx.Response(502))
    with pytest.raises(Failed, match=r"HTTP 502 \(after 1 attempts\)$"):
        await party.call(retries=0)
    assert party.attempts == 1


async def test_messages_name_the_path_only_and_are_redacted(no_waits: None) -> None:
    party = Party(httpx.ConnectError(f"no route to {BASE_URL} for key {SECRET}"))
    with pytest.raises(Failed) as caught:
        await party.call(retries=1)
    assert caught.value.message == (
        f"GET /v1/orders: ConnectError: no route to {BASE_URL} for key *** (after 2 attempts)"
    )
    assert str(party.requests[0].url) == f"{BASE_URL}/v1/orders"
    assert party.requests[0].headers["X-Api-Key"] == SECRET  # sent unchanged, every time
    assert party.requests[1].headers["X-Api-Key"] == SECRET


async def test_on_attempt_is_called_before_each_attempt(no_waits: None) -> None:
    party = Party(httpx.Response(500), httpx.ReadError("reset"), httpx.Response(200))
    await party.call(retries=5)
    assert party.attempts_seen == [1, 2, 3]  # counted before each request went out
    assert party.attempts == 3


# --- the waits ---------------------------------------------------------------------------------


async def test_backoff_grows_exponentially_with_jitter_up_to_a_cap(waits: list[float]) -> None:
    backoff = 1.0
    party = Party(httpx.Response(503))
    with pytest.raises(Failed, match=r"after 7 attempts"):
        await party.call(retries=6, backoff=backoff)
    assert len(waits) == 6
    for n, wait in enumerate(waits, start=1):
        least = backoff * 2 ** (n - 1)
        assert least <= wait <= least + backoff or wait == MAX_BACKOFF, (n, wait)
    assert waits[-2:] == [MAX_BACKOFF, MAX_BACKOFF]  # 16 and 32 s, capped
    assert all(wait > backoff * 2**n for n, wait in enumerate(waits[:4]))  # jittered


async def test_retry_after_is_waited_at_least(waits: list[float]) -> None:
    party = Party(httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(200))
    await party.call(backoff=0.01)
    assert waits == [7.0]


async def test_retry_after_is_capped(waits: list[float]) -> None:
    party = Party(httpx.Response(503, headers={"Retry-After": "3600"}), httpx.Response(200))
    await party.call(backoff=0.01)
    assert waits == [MAX_RETRY_AFTER]


@pytest.mark.parametrize("value", ["0.001", "0", "-5", "soon", "Wed, 21 Oct 2015 07:28:00 GMT"])
async def test_a_short_or_unreadable_retry_after_leaves_the_backoff(
    value: str, waits: list[float]
) -> None:
    party = Party(httpx.Response(503, headers={"Retry-After": value}), httpx.Response(200))
    await party.call(backoff=0.5)
    [wait] = waits
    assert 0.5 <= wait <= 1.0


async def test_each_retry_is_logged_with_what_failed_and_the_wait(
    waits: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=http_retry.__name__)
    party = Party(httpx.Response(503), httpx.ReadTimeout("read timed out"), httpx.Response(200))
    await party.call(retries=2, backoff=0.01)
    retry_log = [
        (r.levelno, r.getMessage()) for r in caplog.records if r.name == http_retry.__name__
    ]
    assert [message for _, message in retry_log] == [
        f"party API GET /v1/orders: HTTP 503; retrying in {waits[0]:.2f}s",
        f"party API GET /v1/orders: ReadTimeout: read timed out; retrying in {waits[1]:.2f}s",
    ]
    assert {level for level, _ in retry_log} == {logging.WARNING}


async def test_stamina_s_own_logging_hook_would_show_no_credentials(
    waits: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    """stamina's logging hook, should an operator add it, logs the retried function's
    arguments: the call, whose repr leaves the request's headers out."""
    caplog.set_level(logging.WARNING)
    hooks = get_on_retry_hooks()
    set_on_retry_hooks([*hooks, LoggingOnRetryHook])
    try:
        await Party(httpx.Response(503), httpx.Response(200)).call()
    finally:
        set_on_retry_hooks(hooks)
    [record] = [r for r in caplog.records if r.name == "stamina"]
    assert record.__dict__["stamina.args"] == ("<party API call GET /v1/orders>",)
    assert SECRET not in repr(record.__dict__)


# --- the budget --------------------------------------------------------------------------------


def slow(status: int, seconds: float) -> Handler:
    """Answers ``status`` after ``seconds``."""

    async def answer(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(seconds)
        return httpx.Response(status)

    return answer


async def test_no_retry_is_scheduled_once_the_budget_is_spent(waits: list[float]) -> None:
    party = Party(handler=slow(503, 0.05))  # each attempt outlasts the budget
    with pytest.raises(Failed, match=r"HTTP 503 \(after 1 attempts\)$") as caught:
        await party.call(retries=5, budget=0.01)
    assert caught.value.transient is True
    assert (party.attempts, waits) == (1, [])

    party = Party(handler=slow(503, 0.01))  # without a budget: every retry
    with pytest.raises(Failed, match=r"after 6 attempts"):
        await party.call(retries=5)
    assert party.attempts == 6


async def test_the_clients_take_a_budget(waits: list[float]) -> None:
    transport = httpx.MockTransport(slow(503, 0.05))
    async with WarehouseClient(
        base_url=BASE_URL, api_key=SECRET, retries=3, budget=0.01, transport=transport
    ) as warehouse:
        with pytest.raises(WarehouseApiError, match=r"HTTP 503 \(after 1 attempts\)$"):
            await warehouse.ping()
    assert warehouse.attempts == 1
    async with StoreClient(
        base_url=BASE_URL, access_token=SECRET, retries=3, budget=0.01, transport=transport
    ) as store:
        with pytest.raises(StoreApiError, match=r"HTTP 503 \(after 1 attempts\)$"):
            await store.list_orders()
    assert waits == []
    with pytest.raises(ValueError, match="budget"):
        WarehouseClient(base_url=BASE_URL, api_key=SECRET, budget=0)
    with pytest.raises(ValueError, match="budget"):
        StoreClient(base_url=BASE_URL, access_token=SECRET, budget=-1)


# --- stamina's switches ------------------------------------------------------------------------


async def test_in_stamina_testing_mode_the_attempts_stay_and_the_waits_go(
    waits: list[float],
) -> None:
    party = Party(httpx.Response(429, headers={"Retry-After": "30"}))
    with (
        stamina.set_testing(True, attempts=1000, cap=True),
        pytest.raises(Failed, match="after 3 attempts"),
    ):
        await party.call(retries=2, backoff=5)
    assert waits == [0.0, 0.0]
    assert not stamina.is_testing()


async def test_calls_at_once_count_their_own_attempts(no_waits: None) -> None:
    """What a call counts is its own, not shared with the calls made at the same time."""
    parties = [Party(httpx.Response(503), httpx.Response(200)) for _ in range(3)]
    failing = Party(httpx.Response(503))
    results: list[Any] = await asyncio.gather(
        *(party.call() for party in parties), failing.call(retries=4), return_exceptions=True
    )
    assert [r.status_code for r in results[:3]] == [200, 200, 200]
    assert isinstance(results[3], Failed) and results[3].message.endswith("(after 5 attempts)")
    assert [party.attempts for party in parties] == [2, 2, 2]
