"""The event hop's spans, made only while tracing is on (``domain.tracing.ENABLED``; callers
test it first): ``outbox publish`` for a publisher round and ``subscription deliver <field>``
for each event a subscription receives.

Both start traces of their own and link to the span that recorded each event (the mutation's,
carried in the event's payload), rather than joining that trace: a round publishes the events of
many requests, and an event reaches many subscriptions. The publisher stamps its span on the
events it hands over (``PUBLISH_KEY``, carried to other instances on the channel too), so a
delivery links to the publication as well; an event the hub reads back from the outbox (a
catch-up, a replay) links to its recording only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING

from domain import tracing
from domain.events import PublishedEvent

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span


@contextmanager
def publishing(events: Sequence[PublishedEvent], *, channel: str) -> Iterator[Span]:
    """The current span while a round hands ``events`` over (to local subscribers, the
    channel, then marks them published), linked to the span that recorded each (one link per
    span; the SDK keeps the first 128 of a span's links unless ``OTEL_SPAN_LINK_COUNT_LIMIT``
    says otherwise)."""
    from opentelemetry import context, trace

    span = tracing.tracer().start_span(
        "outbox publish",
        context=context.Context(),  # a trace of its own, whatever the loop's task inherited
        kind=trace.SpanKind.PRODUCER,
        links=tracing.links(event.recorded_in for event in events),
        attributes={
            "messaging.system": "supplygraph",
            "messaging.operation.type": "send",
            "messaging.destination.name": channel,
            "messaging.batch.message_count": len(events),
        },
    )
    published = tracing.traceparent_of(span.get_span_context())
    for event in events:
        event.mark_published_in(published)  # the round's own copies, fresh from rows
    with trace.use_span(span, end_on_exit=True):
        yield span


class Delivery:
    """One event's delivery to a subscription: from the hub handing it over until the
    subscription asks for its next event, which covers the execution of its result and the
    frames sent. Current meanwhile (the hub's stream runs in the subscription's task), so what
    that execution does (statements, resolvers) is part of it; ``close`` when the stream
    resumes or ends."""

    __slots__ = ("_context", "_span", "_token")

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __init__(self, event: PublishedEvent, field_name: str | None) -> None:
        from opentelemetry import context, trace

        self._span = tracing.tracer().start_span(
            f"subscription deliver {field_name}" if field_name else "subscription deliver",
            context=context.Context(),
            kind=trace.SpanKind.CONSUMER,
            links=tracing.links((event.recorded_in, event.published_in)),
            attributes={
                "messaging.system": "supplygraph",
                "messaging.operation.type": "process",
                "supplygraph.event.seq": event.seq,
                "supplygraph.event.type": event.type,
            },
        )
        self._context: Context = trace.set_span_in_context(self._span)
        self._token = context.attach(self._context)

    def close(self) -> None:
        """End the span, and stop it being current if it still is in this task (a stream closed
        from elsewhere, by its finaliser, leaves the task's context alone)."""
        from opentelemetry import context

        if context.get_current() is self._context:
            context.detach(self._token)
        self._span.end()


_UNTRACED = nullcontext()


def delivering(event: PublishedEvent, field_name: str | None) -> AbstractContextManager[None]:
    """Around handing ``event`` to a subscription: its ``Delivery`` while tracing is on,
    nothing otherwise."""
    return Delivery(event, field_name) if tracing.ENABLED else _UNTRACED


def delivered(members: int) -> None:
    """The current delivery's result went out to ``members`` subscribers of a multiplexed
    group; a group's delivery without it produced no frame (its subscription filtered the
    event out)."""
    from opentelemetry import trace

    trace.get_current_span().set_attribute("supplygraph.subscription.frames_sent", members)
