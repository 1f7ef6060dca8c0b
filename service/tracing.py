"""Tracing with OpenTelemetry: on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (spans exported
over OTLP/HTTP, in batches) or when the app is given a tracer provider of its own (the tests);
off otherwise, and then nothing of it is installed (this code imports OpenTelemetry only when
on).

What a trace holds when on:

- the request: the ASGI server span (``OpenTelemetryMiddleware``), the GraphQL operation and
  its resolvers (Strawberry's ``OpenTelemetryExtension``; argument values are left out, they
  may be credentials), each statement on PostgreSQL (``AsyncPGInstrumentor``), calls to stores
  and warehouses (``HTTPXClientInstrumentor``, which also hands them the trace), and the
  transaction's ``commit`` (``domain.tracing``);
- every event the request records carries its span context to the ``outbox publish`` span of
  the round that publishes it and to each ``subscription deliver <field>`` span, as links
  (``integrations.bus.tracing``).

The middleware and the extension belong to one app and use its provider. The instrumentation of
asyncpg and httpx and the domain's hooks are process-wide: they are installed while a traced
app's lifespan runs and removed when it ends, so an app without tracing served later by the
same process (the tests do) traces nothing. The global tracer provider is never set.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from domain import tracing

if TYPE_CHECKING:
    from graphql import GraphQLResolveInfo
    from opentelemetry.sdk.trace import TracerProvider
    from starlette.applications import Starlette
    from strawberry.extensions import SchemaExtension

    from service.settings import Settings

log = logging.getLogger(__name__)

# probes and scrapes: a span each would be noise
UNTRACED_PATHS = "/healthz,/readyz,/metrics"
TRACER_NAME = "supplygraph"

_installed: Tracing | None = None  # the app whose hooks are installed in this process


def traces_endpoint(endpoint: str) -> str:
    """The OTLP/HTTP traces address under a collector's base address (the specification's
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` rule: ``/v1/traces`` appended)."""
    return endpoint.rstrip("/") + "/v1/traces"


def otlp_provider(endpoint: str, service_name: str) -> TracerProvider:
    """A provider exporting to the collector at ``endpoint`` over OTLP/HTTP, in batches from a
    thread of its own, with ``service_name`` on every span."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    exporter = OTLPSpanExporter(endpoint=traces_endpoint(endpoint))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _no_argument_values(args: dict[str, Any], info: GraphQLResolveInfo) -> dict[str, Any]:
    """What of a resolver's arguments its span shows: nothing (inputs carry store credentials,
    addresses and other tenants' business)."""
    return {}


class Tracing:
    """One app's tracing: its tracer provider, or None when tracing is off (then every method
    does nothing)."""

    def __init__(self, provider: TracerProvider | None = None, *, owned: bool = False) -> None:
        """``owned``: the provider was made here, and is shut down (its spans flushed) when the
        app stops; a provider given by the caller stays the caller's."""
        self.provider = provider
        self._owned = owned

    @classmethod
    def of(cls, settings: Settings, provider: TracerProvider | None = None) -> Tracing:
        """``provider`` if given; else an OTLP exporter's when ``OTEL_EXPORTER_OTLP_ENDPOINT``
        is set; else off."""
        if provider is not None:
            return cls(provider)
        if not settings.otel_exporter_otlp_endpoint:
            return cls()
        endpoint, name = settings.otel_exporter_otlp_endpoint, settings.otel_service_name
        return cls(otlp_provider(endpoint, name), owned=True)

    @property
    def on(self) -> bool:
        return self.provider is not None

    def schema_extensions(self) -> list[Callable[[], SchemaExtension]]:
        """Strawberry's OpenTelemetry extension when on (to come first, so that the operation's
        span holds the other extensions' work); nothing when off."""
        provider = self.provider
        if provider is None:
            return []
        from strawberry.extensions.tracing import OpenTelemetryExtension

        return [
            lambda: OpenTelemetryExtension(tracer_provider=provider, arg_filter=_no_argument_values)
        ]

    def instrument(self, app: Starlette) -> None:
        """When on: the ASGI middleware around ``app`` (outside every other middleware of its
        own), and the process-wide hooks for as long as its lifespan runs."""
        if self.provider is None:
            return
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        app.add_middleware(
            OpenTelemetryMiddleware,
            tracer_provider=self.provider,
            excluded_urls=UNTRACED_PATHS,
            # a span per ASGI message sent or received (every WebSocket frame) says nothing the
            # request's span and the deliveries' do not
            exclude_spans=["receive", "send"],
        )
        inner = app.router.lifespan_context

        @asynccontextmanager
        async def traced_lifespan(app: Starlette) -> AsyncIterator[Any]:
            self.start()
            try:
                async with inner(app) as state:
                    yield state
            finally:
                await self.stop()

        app.router.lifespan_context = traced_lifespan

    def start(self) -> None:
        """Install the process-wide hooks: asyncpg's and httpx's instrumentation and the domain's
        (``domain.tracing``). One app at a time has them; another is traced by its middleware and
        extension only."""
        global _installed
        if self.provider is None:
            return
        if _installed is not None:
            log.warning("tracing is already installed in this process by another app")
            return
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        AsyncPGInstrumentor().instrument(tracer_provider=self.provider)
        HTTPXClientInstrumentor().instrument(tracer_provider=self.provider)
        tracing.install(self.provider.get_tracer(TRACER_NAME))
        _installed = self

    async def stop(self) -> None:
        """Remove what ``start`` installed; flush and shut down a provider made here."""
        global _installed
        if self.provider is None:
            return
        if _installed is self:
            from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
            from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

            tracing.uninstall()
            HTTPXClientInstrumentor().uninstrument()
            AsyncPGInstrumentor().uninstrument()
            _installed = None
        if self._owned:
            # exports what is left, over the network: not on the event loop
            await asyncio.to_thread(self.provider.shutdown)
