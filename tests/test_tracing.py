"""Tracing end to end, on the run's database: a real mutation and a real subscription over a
WebSocket against an app traced into an in-memory exporter, then the spans from the request to
the delivery; an app without tracing left as it was; and spans exported over OTLP/HTTP to a
collector when the endpoint is set.

A mutation's trace holds the server span, the GraphQL operation under it, the transaction's
commit and, on PostgreSQL, the statements; the event it recorded carries that trace in its
stored payload (never shown to clients); the publisher's ``outbox publish`` span links to it,
and so does the subscription's ``subscription deliver <field>`` span, which also links to the
publication. Both write paths are covered: the ORM's (renaming an organisation) and a
written-out statement's (an order's status change, one statement on PostgreSQL).

Each traced app gets a provider of its own: nothing is set globally, and the process-wide
instrumentation is gone once the app stops (checked after each test).
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import pytest
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from domain import tracing
from domain.events.models import Event
from schema.global_ids import key_of
from service.app import create_app
from service.settings import Settings
from tests.conftest import MakeMember, Member, ServerFactory
from tests.support.graphql_client import EVENTS_SUBSCRIPTION, GraphQLHttp, GraphQLWebSocket
from tests.support.server import RunningServer, serve, start_server
from tests.support.services import postgres_url
from tests.test_order_flow import ok, supplier_catalogue

RENAME = """mutation Rename($n: String!) {
  renameOrganisation(input: {name: $n}) { userErrors { code } } }"""
CREATE = """mutation($k: ID!, $m: ID!) { createManualOrder(input: {lines: [{skuId: $k,
quantity: 1}], logisticsMethodId: $m, shippingAddress: {name: "A", address1: "1", city: "L",
countryCode: "GB"}}) { order { id } userErrors { code } } }"""
CANCEL = """mutation Cancel($o: ID!) {
  cancelOrders(orderIds: [$o]) { userErrors { code } } }"""
STATUS_CHANGES = "subscription { orderStatusChanged { orderId toStatus } }"
NO_SAFETY_POLL = 300.0  # events reach the hub from the publisher only (and so link to it)


@dataclass
class Traced:
    server: RunningServer
    spans: InMemorySpanExporter
    http: GraphQLHttp


def _instrumentation_left() -> list[str]:
    left = []
    if tracing.ENABLED:
        left.append("domain.tracing")
    if AsyncPGInstrumentor().is_instrumented_by_opentelemetry:
        left.append("asyncpg")
    if HTTPXClientInstrumentor().is_instrumented_by_opentelemetry:
        left.append("httpx")
    return left


@pytest.fixture
async def traced(base_settings: Settings) -> AsyncIterator[Traced]:
    """A server traced into an in-memory exporter, through a provider of its own."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = base_settings.model_copy(update={"event_resync_interval": NO_SAFETY_POLL})
    server = await start_server(
        settings, make_app=lambda s: create_app(s, tracer_provider=provider)
    )
    http = GraphQLHttp(server.url)
    try:
        yield Traced(server, exporter, http)
    finally:
        await http.close()
        await server.stop()
        provider.shutdown()
    assert _instrumentation_left() == []


async def _finished(
    spans: InMemorySpanExporter, what: str, match: Callable[[ReadableSpan], bool]
) -> ReadableSpan:
    """The first finished span that ``match``es, waiting for it (spans of the publisher and the
    deliveries end in their own tasks, after the client has its answer)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        found = [span for span in spans.get_finished_spans() if match(span)]
        if found:
            return found[0]
        if loop.time() > deadline:
            names = sorted({span.name for span in spans.get_finished_spans()})
            raise AssertionError(f"no {what} span; finished: {names}")
        await asyncio.sleep(0.02)


def _links_to(span: ReadableSpan, trace_id: int) -> bool:
    return any(link.context.trace_id == trace_id for link in span.links)


async def _subscribed(
    server: RunningServer, member: Member, query: str, variables: dict[str, object] | None = None
) -> GraphQLWebSocket:
    ws = await GraphQLWebSocket.connect(server.ws_url, token=member.token)
    await ws.acknowledged()
    await ws.subscribe(query, variables)
    await server.wait_for_subscribers(1)
    return ws


async def _one_trace(traced: Traced, *, operation: str, field: str, event: Event) -> None:
    """The request's trace holds the server span, the operation under it and the commit (and
    the statements on PostgreSQL); the stored ``event`` carries it; the publication and the
    delivery to ``field`` link to it, the delivery to the publication too."""
    spans = traced.spans
    graphql = await _finished(spans, "operation", lambda s: s.name == f"GraphQL Query: {operation}")
    trace_id = graphql.context.trace_id
    assert graphql.parent is not None
    request = await _finished(
        spans,
        "server",
        lambda s: s.context.span_id == graphql.parent.span_id,  # type: ignore[union-attr]
    )
    assert request.kind is SpanKind.SERVER and request.context.trace_id == trace_id
    assert request.instrumentation_scope is not None
    assert request.instrumentation_scope.name == "opentelemetry.instrumentation.asgi"

    def in_trace(span: ReadableSpan) -> bool:
        return span.context.trace_id == trace_id

    await _finished(spans, "commit", lambda s: in_trace(s) and s.name == "commit")
    if postgres_url() is not None:

        def statement(span: ReadableSpan) -> bool:
            attributes = span.attributes or {}
            system = attributes.get("db.system", attributes.get("db.system.name"))
            return in_trace(span) and system == "postgresql"

        await _finished(spans, "asyncpg statement", statement)

    carried = tracing.span_context(event.payload[tracing.TRACE_KEY])
    assert carried is not None and carried.trace_id == trace_id

    publish = await _finished(
        spans, "outbox publish", lambda s: s.name == "outbox publish" and _links_to(s, trace_id)
    )
    assert publish.kind is SpanKind.PRODUCER and not in_trace(publish)
    delivery = await _finished(
        spans,
        "subscription deliver",
        lambda s: s.name == f"subscription deliver {field}" and _links_to(s, trace_id),
    )
    assert delivery.kind is SpanKind.CONSUMER and not in_trace(delivery)
    assert any(link.context.span_id == publish.context.span_id for link in delivery.links)
    assert (delivery.attributes or {}).get("supplygraph.subscription.frames_sent") == 1


async def test_a_renaming_from_request_to_delivery(traced: Traced, make_member: MakeMember) -> None:
    """The ORM's write path: ``record_event``."""
    member = await make_member()
    ws = await _subscribed(
        traced.server, member, EVENTS_SUBSCRIPTION, {"types": ["ORGANISATION_UPDATED"]}
    )
    try:
        traced.spans.clear()
        data = await traced.http.data(RENAME, {"n": "Traced Co"}, token=member.token)
        assert data["renameOrganisation"]["userErrors"] == []
        seen = (await ws.next_data())["events"]
    finally:
        await ws.close()
    assert seen["payload"]["name"] == "Traced Co"
    assert not set(seen["payload"]) & tracing.RESERVED_KEYS  # clients never see the trace

    event = (
        await Event.filter(type="ORGANISATION_UPDATED", subject_id=str(member.organisation_id))
        .order_by("-id")
        .first()
    )
    assert event is not None
    await _one_trace(traced, operation="Rename", field="events", event=event)


async def test_a_status_change_from_request_to_delivery(
    traced: Traced, make_member: MakeMember
) -> None:
    """A written-out statement's write path (the order, its timeline and its event in one
    statement on PostgreSQL)."""
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    catalogue = await supplier_catalogue(traced.http, supplier)
    made = await ok(
        traced.http,
        CREATE,
        {"k": catalogue["skus"]["TEE-R-M"], "m": catalogue["method"]},
        token=buyer.token,
    )
    order_id = made["order"]["id"]
    ws = await _subscribed(traced.server, buyer, STATUS_CHANGES)
    try:
        traced.spans.clear()
        await ok(traced.http, CANCEL, {"o": order_id}, token=buyer.token)
        seen = (await ws.next_data())["orderStatusChanged"]
    finally:
        await ws.close()
    assert seen == {"orderId": order_id, "toStatus": "CANCELLED"}

    event = (
        await Event.filter(type="ORDER_STATUS_CHANGED", subject_id=str(key_of(order_id)))
        .order_by("-id")
        .first()
    )
    assert event is not None and event.payload["to"] == "CANCELLED"
    await _one_trace(traced, operation="Cancel", field="orderStatusChanged", event=event)


async def test_off_by_default_nothing_is_installed(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    """Without an endpoint or a provider: no middleware, no instrumentation, no trace in
    the events."""
    assert not server.settings.otel_exporter_otlp_endpoint
    assert _instrumentation_left() == []
    assert not any("opentelemetry" in m.cls.__module__ for m in server.app.user_middleware)
    member = await make_member()
    data = await client.data(RENAME, {"n": "Untraced Co"}, token=member.token)
    assert data["renameOrganisation"]["userErrors"] == []
    event = (
        await Event.filter(type="ORGANISATION_UPDATED", subject_id=str(member.organisation_id))
        .order_by("-id")
        .first()
    )
    assert event is not None and not set(event.payload) & tracing.RESERVED_KEYS


async def test_spans_are_exported_over_otlp_when_an_endpoint_is_set(
    make_server: ServerFactory,
) -> None:
    """A collector (a real HTTP server taking OTLP/HTTP protobuf) receives the spans, with the
    service's name, by the time the app has stopped."""
    received: list[ExportTraceServiceRequest] = []

    async def collect(request: Request) -> Response:
        body = await request.body()
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        received.append(ExportTraceServiceRequest.FromString(body))
        return Response(status_code=200)

    collector = Starlette(routes=[Route("/v1/traces", collect, methods=["POST"])])
    async with serve(collector) as collector_url:
        server = await make_server(
            otel_exporter_otlp_endpoint=collector_url, otel_service_name="supplygraph-otlp-test"
        )
        async with httpx.AsyncClient() as http:
            response = await http.post(
                f"{server.url}/graphql", json={"query": "query Probe { __typename }"}
            )
            assert response.status_code == 200, response.text
        await server.stop()  # the provider's shutdown exports what is left
        assert _instrumentation_left() == []

    names: set[str] = set()
    services: set[str] = set()
    for export in received:
        for resource_spans in export.resource_spans:
            for attribute in resource_spans.resource.attributes:
                if attribute.key == "service.name":
                    services.add(attribute.value.string_value)
            for scope_spans in resource_spans.scope_spans:
                names.update(span.name for span in scope_spans.spans)
    assert services == {"supplygraph-otlp-test"}
    assert "GraphQL Query: Probe" in names
