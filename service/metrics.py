"""Prometheus metrics at ``/metrics``: requests and latencies by GraphQL operation and by HTTP
route, response cache hits and misses, active subscriptions and their multiplexed groups, outbox
lag and the background work queues.

Each app has its own registry (several apps can live in one test process). With
``WORKERS > 1`` every worker process has its own figures: scrape each instance or process
(``PROMETHEUS_MULTIPROC_DIR`` is not used). ``METRICS_TOKEN``, when set, is required as a
Bearer token; otherwise keep ``/metrics`` on the internal network.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.extensions import SchemaExtension

from domain.distribution.models import TaskState, WarehouseTask
from domain.events.models import Event
from domain.orders.models import Order, TrackingSync
from domain.stores import inbox as store_inbox
from integrations.background import running_loops
from integrations.request_load import RequestLoad

MAX_OPERATION_NAMES = 200
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_ROUTES = (
    "/graphql",
    "/webhooks/stores",
    "/webhooks/warehouses",
    "/webhooks/cloud-warehouses",
    "/healthz",
    "/readyz",
    "/metrics",
)


def _route(path: str) -> str:
    for prefix in _ROUTES:
        if path == prefix or path.startswith(prefix + "/"):
            return prefix
    return "other"


class _Live(Collector):
    """Figures read when scraped: subscriptions of this process and the shared queues."""

    def __init__(self, state: Any) -> None:
        self._state = state
        self.cached: dict[str, float] = {}

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        rounds = CounterMetricFamily(
            "supplygraph_background_rounds",
            "Rounds each background loop of this process has run (woken by work, work falling "
            "due, or its safety sweep): what an idle instance still does.",
            labels=["loop"],
        )
        for loop in running_loops():
            rounds.add_metric([loop.name], loop.rounds)
        yield rounds
        live = getattr(self._state, "live", None)
        yield GaugeMetricFamily(
            "supplygraph_active_subscriptions",
            "GraphQL subscriptions open on this process.",
            value=live.open_subscriptions if live is not None else 0,
        )
        yield GaugeMetricFamily(
            "supplygraph_subscription_groups",
            "Multiplexed subscription executions on this process (subscribers with the same "
            "operation, variables and visibility share one).",
            value=live.group_count if live is not None else 0,
        )
        for name, doc in (
            ("supplygraph_outbox_unpublished_events", "Committed events not yet broadcast."),
            ("supplygraph_warehouse_tasks_pending", "Warehouse pushes and withdraws queued."),
            ("supplygraph_tracking_pushes_pending", "Shipped orders whose tracking is unsent."),
            ("supplygraph_store_inbox_pending", "Store webhooks accepted, orders not taken in."),
        ):
            yield GaugeMetricFamily(name, doc, value=self.cached.get(name, 0))


class Metrics:
    def __init__(self, state: Any) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.operations = Counter(
            "supplygraph_graphql_operations",
            "GraphQL operations by name, type and outcome.",
            ["operation", "type", "outcome"],
            registry=self.registry,
        )
        self.operation_seconds = Histogram(
            "supplygraph_graphql_operation_seconds",
            "GraphQL query and mutation execution time by name and type.",
            ["operation", "type"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.http_requests = Counter(
            "supplygraph_http_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.http_seconds = Histogram(
            "supplygraph_http_request_seconds",
            "HTTP request time by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.response_cache = Counter(
            "supplygraph_response_cache_lookups",
            "GraphQL queries looked up in the response cache, by result (hit or miss). A hit is "
            "answered without executing; it counts as an ok operation, timed from lookup to reply.",
            ["result"],
            registry=self.registry,
        )
        self.live = _Live(state)
        self.registry.register(self.live)
        self._names: set[str] = set()

    def operation_label(self, name: str | None) -> str:
        """Client-chosen names, capped so a client cannot blow up the label set."""
        label = (name or "anonymous")[:64]
        if label in self._names:
            return label
        if len(self._names) >= MAX_OPERATION_NAMES:
            return "other"
        self._names.add(label)
        return label

    async def refresh(self) -> None:
        """Read the shared queue sizes (a few indexed COUNTs) before rendering."""
        self.live.cached = {
            "supplygraph_outbox_unpublished_events": await Event.filter(
                published_at__isnull=True
            ).count(),
            "supplygraph_warehouse_tasks_pending": await WarehouseTask.filter(
                state=TaskState.PENDING
            ).count(),
            "supplygraph_tracking_pushes_pending": await Order.filter(
                tracking_sync__in=[TrackingSync.PENDING, TrackingSync.FAILED]
            ).count(),
            "supplygraph_store_inbox_pending": await store_inbox.pending_count(),
        }


class OperationMetrics(SchemaExtension):
    """Counts every operation and times queries and mutations (a subscription is counted when
    it ends; open ones are the ``supplygraph_active_subscriptions`` gauge)."""

    def on_operation(self) -> Iterator[None]:  # type: ignore[override]
        started = time.perf_counter()
        yield
        ctx = self.execution_context
        app = getattr(getattr(ctx.context, "request", None), "app", None)
        metrics: Metrics | None = getattr(app.state, "metrics", None) if app else None
        if metrics is None:
            return
        try:
            kind = ctx.operation_type.value
        except Exception:  # unparsable document: no operation type
            kind = "unknown"
        name = metrics.operation_label(ctx.operation_name)
        failed = ctx.result is not None and bool(getattr(ctx.result, "errors", None))
        metrics.operations.labels(name, kind, "error" if failed else "ok").inc()
        if kind != "subscription":
            metrics.operation_seconds.labels(name, kind).observe(time.perf_counter() - started)


class HttpMetricsMiddleware:
    """Counts and times HTTP requests by route and status, and keeps ``load`` (the requests in
    flight, which background work yields to)."""

    def __init__(self, app: ASGIApp, load: RequestLoad | None = None) -> None:
        self.app = app
        self.load = load if load is not None else RequestLoad()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        load = self.load
        load.entered()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            load.left()
            metrics: Metrics | None = getattr(scope["app"].state, "metrics", None)
            if metrics is not None:
                route = _route(scope["path"])
                metrics.http_requests.labels(route, scope["method"], str(status)).inc()
                metrics.http_seconds.labels(route).observe(time.perf_counter() - started)


async def metrics_endpoint(request: Request) -> Response:
    token = request.app.state.settings.metrics_token
    if not token:  # every tenant's operation names and counts: never public
        return Response(
            "metrics are off: set METRICS_TOKEN\n", status_code=404, media_type="text/plain"
        )
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return Response("unauthorized\n", status_code=401, media_type="text/plain")
    metrics: Metrics = request.app.state.metrics
    await metrics.refresh()
    return Response(
        generate_latest(metrics.registry),
        media_type="text/plain; version=0.0.4; charset=utf-8",
    )


__all__ = ["HttpMetricsMiddleware", "Metrics", "OperationMetrics", "metrics_endpoint"]
