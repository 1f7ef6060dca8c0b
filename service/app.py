"""The ASGI application: routes, middleware and the lifespan that owns every connection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from tortoise import Tortoise, connections
from tortoise.contrib.starlette import RegisterTortoise

from compat.uvicorn import on_exit
from domain.db import tortoise_config
from domain.secrets import SecretsKeyRefused
from domain.stores import inbox as store_inbox
from integrations import outbound
from integrations.bus.broadcast import create_broadcast
from integrations.bus.channel import events_channel
from integrations.bus.hub import EventHub
from integrations.bus.publisher import ROUND_LEASE_SECONDS, OutboxPublisher
from integrations.request_load import RequestLoad
from integrations.sla import SlaWorker
from integrations.stores.inbox import InboxSettings, StoreInboxWorker
from integrations.stores.sync import TrackingPusher
from integrations.stores.webhook import receive_store_order
from integrations.wakeups import WorkKind, served_config, wakeups_for
from integrations.warehouses.callbacks import receive_warehouse_callback
from integrations.warehouses.cloud_receipts import receive_cloud_receipt
from integrations.warehouses.worker import WarehouseWorker, WorkerSettings
from schema.build import create_schema
from service import runtime
from service.cors import cors_middleware
from service.dashboard import dashboard_routes
from service.demo_simulators import demo_routes
from service.graphiql import asset_routes
from service.graphql_view import GraphQLView
from service.introspection import IntrospectionForAuthenticated
from service.limits.extension import cost_extensions
from service.limits.throttle import Throttle
from service.live import LiveEndpoint, Multiplexer
from service.metrics import HttpMetricsMiddleware, Metrics, OperationMetrics, metrics_endpoint
from service.middleware import BodyLimitMiddleware, RequestIdMiddleware
from service.persisted_documents import (
    DocumentStore,
    MemoryDocuments,
    PersistedDocuments,
    RedisDocuments,
    load_manifest,
)
from service.security_headers import SecurityHeadersMiddleware
from service.settings import Settings
from service.shutdown import Drain
from service.tracing import Tracing

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger("supplygraph")
READINESS_TIMEOUT = 2.0
SQLITE_OUTBOX_SWEEP = 2.0  # seconds: see the outbox publisher below


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def _answers(check: Awaitable[object]) -> str | None:
    """None if ``check`` completes within READINESS_TIMEOUT, else what went wrong.

    The check runs as a task that is left behind on timeout, not cancelled and awaited: against
    a hung database, asyncpg's cancellation itself waits for the server, and readiness must
    answer while the database does not.
    """
    task = asyncio.ensure_future(check)
    done, _ = await asyncio.wait({task}, timeout=READINESS_TIMEOUT)
    if not done:
        task.cancel()
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieve, ignore
        return f"no answer within {READINESS_TIMEOUT:g} s"
    error = task.exception()
    return None if error is None else f"unreachable: {type(error).__name__}"


async def readyz(request: Request) -> JSONResponse:
    """Ready when the database and the broadcast backend both answer (each within
    READINESS_TIMEOUT; the two are checked at once); never once the process drains to stop
    (``service/shutdown.py``), so that a load balancer sends it nothing more."""
    drain = getattr(request.app.state, "drain", None)
    if drain is not None and drain.draining:
        return JSONResponse({"status": "draining"}, status_code=503)
    database, broadcast = await asyncio.gather(
        _answers(connections.get("default").execute_query("SELECT 1")),
        _answers(request.app.state.broadcast.ping()),
    )
    problems = {
        name: problem
        for name, problem in (("database", database), ("broadcast", broadcast))
        if problem is not None
    }
    if problems:
        return JSONResponse({"status": "unavailable", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ready"})


def _worker_settings(settings: Settings, *, poll_interval: float) -> WorkerSettings:
    return WorkerSettings(
        public_url=settings.public_url or f"http://{settings.host}:{settings.port}",
        timeout=settings.warehouse_timeout,
        retries=settings.warehouse_retries,
        backoff=min(0.5, settings.warehouse_retry_delay / 4),
        task_attempts=settings.warehouse_task_attempts,
        retry_delay=settings.warehouse_retry_delay,
        lease_seconds=settings.work_lease_seconds,
        poll_interval=poll_interval,
        reconcile_after=settings.warehouse_reconcile_after,
        busy_pause=settings.warehouse_busy_pause,
    )


def _persisted_documents(settings: Settings) -> PersistedDocuments:
    store: DocumentStore | None = None
    if settings.persisted_queries and settings.redis_url:
        store = RedisDocuments(settings.redis_url, ttl=settings.persisted_query_ttl)
    elif settings.persisted_queries:
        store = MemoryDocuments(settings.persisted_query_entries)
    trusted = None
    if settings.trusted_documents:
        trusted = load_manifest(Path(settings.trusted_documents))
    return PersistedDocuments(store, trusted)


SLOW_STOP = 1.0  # s: a shutdown step that takes longer is logged with its time
# s the database's pools wait at the end of a shutdown for a connection still taken (Tortoise's
# own close would wait 10 s, then end it)
DATABASE_CLOSE_WAIT = 2.0


async def _stop_in_turn(steps: list[tuple[str, Callable[[], Awaitable[object]]]]) -> None:
    """Run the shutdown's steps in order; one slower than ``SLOW_STOP`` is logged by name (a
    stop that waits out a timeout says which)."""
    for name, stop in steps:
        started = time.monotonic()
        await stop()
        took = time.monotonic() - started
        if took > SLOW_STOP:
            log.warning("shutdown: stopping the %s took %.1f s", name, took)


async def _close_database() -> None:
    """Close the database's pools, the shutdown's last step, ending a connection still taken
    after ``DATABASE_CLOSE_WAIT``: by now requests and loops have ended, so a connection still
    taken is work cut off (CI once waited out Tortoise's 10 s for one). The log names the tasks
    still running then."""
    try:
        async with asyncio.timeout(DATABASE_CLOSE_WAIT):
            await Tortoise.close_connections()
    except TimeoutError:
        running = sorted(
            f"{task.get_name()} ({getattr(task.get_coro(), '__qualname__', '?')})"
            for task in asyncio.all_tasks()
            if task is not asyncio.current_task()
        )
        log.warning(
            "shutdown: a database connection was still taken after %.0f s and was ended; "
            "tasks still running: %s",
            DATABASE_CLOSE_WAIT,
            "; ".join(running) or "none",
        )


def create_app(settings: Settings, *, tracer_provider: TracerProvider | None = None) -> Starlette:
    """The app; ``tracer_provider`` traces it (tests give one with an in-memory exporter),
    else ``OTEL_EXPORTER_OTLP_ENDPOINT`` decides (``service.tracing``)."""
    tracing = Tracing.of(settings, tracer_provider)
    documents = _persisted_documents(settings)
    throttle = Throttle.of(settings)
    schema = create_schema(
        max_depth=settings.max_query_depth,
        max_tokens=settings.max_query_tokens,
        max_aliases=settings.max_aliases,
        max_batch_operations=settings.max_batch_operations,
        trusted_digests=documents.trusted_digests,
        extra_extensions=[
            *tracing.schema_extensions(),
            *cost_extensions(throttle),
            OperationMetrics,
        ],
        after_validation=() if settings.introspection_open else [IntrospectionForAuthenticated],
    )
    graphql = GraphQLView(schema, settings, documents, throttle=throttle)

    request_load = RequestLoad(busy_at=settings.busy_requests)
    live = LiveEndpoint(graphql, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        settings.configure_outbound()
        outbound.tls_context()  # once, before anything is served (about 20 ms of CPU)
        # this instance's sessions wake its loops in process, not through NOTIFY
        database = served_config(
            tortoise_config(settings.database_url, pool_size=settings.database_pool_size)
        )
        async with RegisterTortoise(app, config=database):
            try:
                await settings.open_secrets()  # one key per deployment (domain.secrets)
            except SecretsKeyRefused as refused:
                log.critical("supplygraph refuses to start: %s", refused)
                raise
            broadcast = create_broadcast(settings.broadcast_url, start_when_unreachable=True)
            await broadcast.connect()
            channel = events_channel(settings.database_url)
            wakeups = wakeups_for(
                settings.database_url,
                # at least once a lease: another instance's work, held when it died, is found
                # and taken once its lease runs out, within one lease (the recovery objective)
                check_interval=min(settings.work_sweep_seconds, settings.work_lease_seconds),
                tracking_attempts=settings.tracking_max_attempts,
            )
            # each loop's own safety sweep (on PostgreSQL the wake-ups sweep for them all)
            loop_sweep = wakeups.loop_sweep(settings.work_sweep_seconds)
            hub = EventHub(
                broadcast, resync_interval=settings.event_resync_interval, channel=channel
            )
            publisher = OutboxPublisher(
                broadcast,
                # SQLite has no NOTIFY: events another process commits (``make seed``, a CLI
                # command) are found by this sweep, so it is short there (one cheap query)
                poll_interval=(
                    min(settings.work_sweep_seconds, SQLITE_OUTBOX_SWEEP)
                    if settings.is_sqlite
                    else loop_sweep
                ),
                retry_interval=settings.outbox_retry_interval,
                deliver_locally=hub.offer,
                channel=channel,
                lease_seconds=min(settings.work_lease_seconds, ROUND_LEASE_SECONDS),
                # instances share the channel through Redis: one publishes at a time
                exclusive=bool(settings.redis_url),
            )
            tracking = TrackingPusher(
                poll_interval=loop_sweep,
                base_delay=settings.tracking_retry_delay,
                max_attempts=settings.tracking_max_attempts,
                lease_seconds=settings.work_lease_seconds,
            )
            app.state.broadcast, app.state.hub, app.state.publisher = broadcast, hub, publisher
            app.state.live = Multiplexer(graphql.schema, hub, app, graphql.services)
            if graphql.response_cache is not None:
                graphql.response_cache.follow(hub)  # invalidated by every event the hub hears
            app.state.tracking = tracking
            app.state.settings = settings
            warehouses = WarehouseWorker(
                _worker_settings(settings, poll_interval=loop_sweep), load=request_load
            )
            app.state.warehouses = warehouses
            inbox = StoreInboxWorker(
                InboxSettings(
                    poll_interval=loop_sweep,
                    max_attempts=settings.store_inbox_attempts,
                    retry_delay=settings.store_inbox_retry_delay,
                    lease_seconds=settings.work_lease_seconds,
                )
            )
            app.state.store_inbox = inbox
            app.state.inbox_intake = store_inbox.InboxIntake()
            sla_worker = SlaWorker(
                sweep_interval=settings.sla_sweep_interval,
                lease_seconds=settings.work_lease_seconds,
            )
            hub.on_dispatch(sla_worker.on_event)
            app.state.sla = sla_worker
            wakeups.subscribe(WorkKind.OUTBOX, publisher.wake)
            wakeups.subscribe(WorkKind.INBOX, inbox.wake)
            wakeups.subscribe(WorkKind.WAREHOUSE_TASK, warehouses.wake)
            wakeups.subscribe(WorkKind.TRACKING, tracking.wake)
            # leases given back as the instance stops: the other instances take the work now
            for kind, heartbeat in (
                (WorkKind.INBOX, inbox.heartbeat),
                (WorkKind.WAREHOUSE_TASK, warehouses.heartbeat),
                (WorkKind.TRACKING, tracking.heartbeat),
                (WorkKind.OUTBOX, publisher.heartbeat),
            ):
                heartbeat.on_released = partial(wakeups.announce, kind)
            app.state.wakeups = wakeups
            await hub.start()
            await wakeups.start()  # before the loops' first rounds: nothing falls between
            await publisher.start()
            await tracking.start()
            await warehouses.start()
            await inbox.start()
            await sla_worker.start()
            if settings.gc_tuning:
                runtime.tune()  # after startup: what exists now lives as long as the process
            # from SIGTERM on: no new work, leases handed back, live sockets told to resume
            app.state.drain = Drain(
                loops=(inbox, warehouses, tracking, sla_worker), sockets=live.sockets
            )
            forget_drain = on_exit(app.state.drain)
            if not settings.is_sqlite and not settings.public_url:
                # each instance would give warehouses its own callback address, in the body of
                # a push another instance may send again under the same idempotency key
                log.warning(
                    "PUBLIC_URL is not set: warehouses are told to call back this instance "
                    "(http://%s:%s); with several instances set PUBLIC_URL to the address they "
                    "share",
                    settings.host,
                    settings.port,
                )
            log.info("supplygraph ready (broadcast: %s)", settings.broadcast_url.split("@")[-1])
            try:
                yield
            finally:
                forget_drain()
                steps: list[tuple[str, Callable[[], Awaitable[object]]]] = [
                    ("work wake-ups", wakeups.stop),
                    ("sla worker", sla_worker.stop),
                    ("store inbox", inbox.stop),
                    ("warehouse worker", warehouses.stop),
                    ("tracking pusher", tracking.stop),
                    ("live subscriptions", app.state.live.stop),
                    ("event hub", hub.stop),  # ends open subscriptions cleanly
                    ("outbox publisher", publisher.stop),
                    ("broadcast", broadcast.disconnect),
                    ("throttle", throttle.close),
                ]
                if isinstance(documents.store, RedisDocuments):
                    steps.append(("persisted documents", documents.store.close))
                steps.append(("database connections", _close_database))
                await _stop_in_turn(steps)

    app = Starlette(
        debug=False,
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
            Route("/graphql", graphql),  # other methods: a 405 in GraphQL's shape, from the view
            Route("/webhooks/stores/{store_id}/orders", receive_store_order, methods=["POST"]),
            Route(
                "/webhooks/cloud-warehouses/{warehouse_id}/receipts",
                receive_cloud_receipt,
                methods=["POST"],
            ),
            Route(
                "/webhooks/warehouses/{third_party_warehouse_id}",
                receive_warehouse_callback,
                methods=["POST"],
            ),
            WebSocketRoute("/graphql", live),
            *asset_routes(settings),
            *dashboard_routes(),
            *demo_routes(settings),  # DEMO: the demo world's simulators, under /_demo
        ],
        middleware=[
            Middleware(HttpMetricsMiddleware, load=request_load),
            Middleware(RequestIdMiddleware),
            Middleware(SecurityHeadersMiddleware, hsts_seconds=settings.hsts_seconds),
            *cors_middleware(settings),  # outside the body limit: a 413 is readable too
            Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes),
        ],
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = Metrics(app.state)
    tracing.instrument(app)
    return app
