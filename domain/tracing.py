"""Tracing as the domain sees it: whether it is on, the trace an event carries from the request
that recorded it, and the span of a transaction's commit.

Off by default, and then nothing here makes an object or imports OpenTelemetry: ``ENABLED`` is a
module-level boolean that the paths run per event or per transaction test first
(``service.tracing`` switches it on while a traced app runs, and gives the tracer).

When on, an event built inside a traced request carries that request's span context, as a W3C
``traceparent``, under ``TRACE_KEY`` in its stored payload (``domain.events.NewEvent.trace``,
written by ``domain.persistence.events.stored_payload``). Every way of writing events (the ORM,
written-out statements, writes of several requests grouped into one statement) writes that
payload, and the outbox, the broadcast channel and the hub carry it untouched to every instance,
so no column or migration is needed. The publisher adds its own span's under ``PUBLISH_KEY``
(``integrations.bus.tracing``). Clients never see either key
(``domain.events.catalogue.public_payload``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from opentelemetry.trace import Link, SpanContext, Tracer

ENABLED = False
TRACE_KEY = "_trace"  # the span that recorded the event (W3C traceparent)
PUBLISH_KEY = "_publish"  # the ``outbox publish`` span that put it on the channel
RESERVED_KEYS = frozenset({TRACE_KEY, PUBLISH_KEY})

_tracer: Tracer | None = None


def install(tracer: Tracer) -> None:
    """Trace with ``tracer`` in this process from now on (``service.tracing``)."""
    global ENABLED, _tracer
    _tracer, ENABLED = tracer, True


def uninstall() -> None:
    """Back to off: nothing is traced and events carry no trace."""
    global ENABLED, _tracer
    ENABLED, _tracer = False, None


def tracer() -> Tracer:
    if _tracer is None:
        raise RuntimeError("tracing is off")
    return _tracer


def traceparent_of(context: SpanContext) -> str:
    """``context`` as a W3C ``traceparent`` header value."""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def current_traceparent() -> str | None:
    """The current span's context as a ``traceparent``; None outside a trace. Called only when
    ``ENABLED``."""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return traceparent_of(context) if context.is_valid else None


def span_context(traceparent: object) -> SpanContext | None:
    """The span context a ``traceparent`` names; None for anything else (a missing key, a value
    that is not one)."""
    if not isinstance(traceparent, str):
        return None
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carried = TraceContextTextMapPropagator().extract({"traceparent": traceparent})
    context = trace.get_current_span(carried).get_span_context()
    return context if context.is_valid else None


def links(traceparents: Iterable[object]) -> list[Link]:
    """A link to each distinct span the ``traceparents`` name, in order (events recorded by one
    request share one)."""
    from opentelemetry.trace import Link

    found: dict[str, Link] = {}
    for traceparent in traceparents:
        if isinstance(traceparent, str) and traceparent not in found:
            context = span_context(traceparent)
            if context is not None:
                found[traceparent] = Link(context)
    return list(found.values())


def public(payload: Mapping[str, Any]) -> dict[str, Any]:
    """``payload`` without the keys tracing reserves."""
    return {key: value for key, value in payload.items() if key not in RESERVED_KEYS}


class TracedCommit:
    """A transaction whose commit is a ``commit`` span of the current trace (on SQLite as on
    PostgreSQL, where asyncpg's instrumentation shows the statements): wraps the outermost
    ``in_transaction()`` of ``domain.db.transaction`` when ``ENABLED``. A transaction outside a
    trace (background work) or rolled back makes no span."""

    __slots__ = ("_transaction",)

    def __init__(self, transaction: AbstractAsyncContextManager[Any]) -> None:
        self._transaction = transaction

    async def __aenter__(self) -> Any:
        return await self._transaction.__aenter__()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        from opentelemetry import trace

        if kind is not None or _tracer is None or not trace.get_current_span().is_recording():
            return await self._transaction.__aexit__(kind, error, traceback)
        with _tracer.start_as_current_span("commit", attributes={"db.operation.name": "COMMIT"}):
            return await self._transaction.__aexit__(None, None, None)


@contextmanager
def autocommit() -> Iterator[None]:
    """A block whose write is one statement, committed by itself (``domain.db.
    transaction_unless``): the ``commit`` span of the current trace around it, as
    ``TracedCommit`` makes for a transaction's commit, so a trace shows where a command's write
    became durable either way. Outside a trace, or with tracing off, nothing."""
    if _tracer is None:
        yield
        return
    from opentelemetry import trace

    if not trace.get_current_span().is_recording():
        yield
        return
    attributes = {"db.operation.name": "COMMIT", "supplygraph.commit": "single statement"}
    with _tracer.start_as_current_span("commit", attributes=attributes):
        yield
