"""Settings read from environment variables, with checked types.

Every variable is listed in ``FIELDS`` with its default; the README's configuration table is
generated from the same list (``python main.py settings``), so the two cannot drift apart.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from domain import external_addresses
from domain.external_addresses import AddressPolicy
from domain.secrets import check_key, configure, load_or_create_key
from integrations import outbound

DEFAULT_DATABASE_URL = "sqlite://./supplygraph.sqlite3"


class SettingsError(ValueError):
    """Raised when one or more environment variables hold unusable values."""


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("expected one of true/false/1/0/yes/no/on/off")


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _port(raw: str) -> int:
    value = int(raw)
    if not 0 < value < 65536:
        raise ValueError("must be between 1 and 65535")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be >= 0")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError("must be a positive number")
    return value


def _non_negative_float(raw: str) -> float:
    value = float(raw)
    if not value >= 0 or value == float("inf"):
        raise ValueError("must be a number >= 0")
    return value


def _database_url(raw: str) -> str:
    scheme = urlparse(raw).scheme
    if scheme == "sqlite":
        return raw
    if scheme in {"postgres", "postgresql", "asyncpg"}:
        # Tortoise's asyncpg engine is registered under "postgres"/"asyncpg".
        return "postgres" + raw[len(scheme) :]
    raise ValueError("expected sqlite://PATH or postgres://USER@HOST:PORT/DB")


def _broadcast_url(raw: str) -> str:
    if raw == "":
        return ""
    if urlparse(raw).scheme not in {"redis", "rediss"}:
        raise ValueError("expected redis://HOST:PORT/DB (or empty for in-memory broadcast)")
    return raw


def _log_level(raw: str) -> str:
    value = raw.upper()
    if value not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError("expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return value


def _log_format(raw: str) -> str:
    value = raw.lower()
    if value not in {"auto", "json", "text"}:
        raise ValueError("expected auto, json or text")
    return value


def _origins(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _introspection(raw: str) -> str:
    value = raw.strip().lower()
    if value not in {"authenticated", "open"}:
        raise ValueError("expected authenticated or open")
    return value


def _hosts(raw: str) -> tuple[str, ...]:
    hosts = tuple(h.strip().lower() for h in raw.split(",") if h.strip())
    if any(("/" in h or " " in h) for h in hosts):
        raise ValueError("expected host names or addresses, separated by commas")
    return hosts


def _trusted_documents(raw: str) -> str:
    if raw and not Path(raw).is_file():
        raise ValueError(f"no such file: {raw}")
    return raw


def _cors_origins(raw: str) -> tuple[str, ...]:
    """Origins as browsers send them (``https://Example.com:443/`` is ``https://example.com``),
    so that the CORS middleware's exact comparison matches."""
    from strawberry.http.websocket_origin import normalize_allowed_origins

    return tuple(sorted(normalize_allowed_origins(_origins(raw))))


def _secrets_key(raw: str) -> str:
    return check_key(raw) if raw else ""


def _setting(env: str, default: str, parse: Callable[[str], Any], doc: str) -> Any:
    return field(metadata={"env": env, "default": default, "parse": parse, "doc": doc})


@dataclass(frozen=True, kw_only=True)
class Settings:
    database_url: str = _setting(
        "DATABASE_URL",
        DEFAULT_DATABASE_URL,
        _database_url,
        "Database: `sqlite://PATH` or `postgres://USER:PASS@HOST:PORT/DB` (asyncpg).",
    )
    database_pool_size: int = _setting(
        "DATABASE_POOL_SIZE",
        "10",
        _positive_int,
        "Most PostgreSQL connections an instance opens (opened as needed). Requests that "
        "read while payments of one wallet wait for its lock need connections beside them.",
    )
    redis_url: str = _setting(
        "REDIS_URL",
        "",
        _broadcast_url,
        "Redis for the event broadcast between instances; empty means in-process memory.",
    )
    host: str = _setting("HOST", "127.0.0.1", str, "Address `serve` binds to.")
    port: int = _setting("PORT", "8000", _port, "Port `serve` listens on.")
    workers: int = _setting("WORKERS", "1", _positive_int, "uvicorn worker processes for `serve`.")
    debug: bool = _setting("DEBUG", "false", _bool, "Serve GraphiQL at `/graphql`.")
    introspection: str = _setting(
        "INTROSPECTION",
        "authenticated",
        _introspection,
        "`authenticated`: `__schema` and `__type` need a valid token; `open`: anyone may "
        "introspect (DEBUG opens it too).",
    )
    log_level: str = _setting("LOG_LEVEL", "INFO", _log_level, "Log level.")
    log_format: str = _setting(
        "LOG_FORMAT",
        "auto",
        _log_format,
        "`json` lines, readable `text` lines (coloured on a terminal), or `auto`: text when "
        "standard error is a terminal, else json.",
    )
    otel_exporter_otlp_endpoint: str = _setting(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "",
        str,
        "OpenTelemetry collector to export traces to over OTLP/HTTP (`http://HOST:4318`); "
        "empty: tracing is off and costs nothing.",
    )
    otel_service_name: str = _setting(
        "OTEL_SERVICE_NAME", "supplygraph", str, "Service name the traces carry."
    )
    max_query_depth: int = _setting(
        "MAX_QUERY_DEPTH", "12", _positive_int, "Deepest selection nesting a document may have."
    )
    max_query_tokens: int = _setting(
        "MAX_QUERY_TOKENS", "3000", _positive_int, "Most lexical tokens in one document."
    )
    max_aliases: int = _setting(
        "MAX_ALIASES", "30", _positive_int, "Most field aliases in one document."
    )
    max_batch_operations: int = _setting(
        "MAX_BATCH_OPERATIONS",
        "10",
        _positive_int,
        "Most operations in one batched HTTP request (a JSON array, as Apollo's "
        "`BatchHttpLink` sends); each is authorised and limited as a single one.",
    )
    max_body_bytes: int = _setting(
        "MAX_BODY_BYTES",
        "1048576",
        _positive_int,
        "Largest HTTP request body and WebSocket message, in bytes.",
    )
    max_subscriptions_per_connection: int = _setting(
        "MAX_SUBSCRIPTIONS_PER_CONNECTION",
        "50",
        _positive_int,
        "Most operations one WebSocket may run at once.",
    )
    ws_allowed_origins: tuple[str, ...] = _setting(
        "WS_ALLOWED_ORIGINS",
        "",
        _origins,
        "Comma-separated browser origins allowed to open a WebSocket from another site "
        "(`*` for any). Same-origin and non-browser clients are always allowed.",
    )
    hsts_seconds: int = _setting(
        "HSTS_SECONDS",
        "31536000",
        _non_negative_int,
        "Strict-Transport-Security max-age sent on answers to https requests (behind a TLS proxy: "
        "with uvicorn's proxy headers from FORWARDED_ALLOW_IPS); 0: never sent.",
    )
    cors_allowed_origins: tuple[str, ...] = _setting(
        "CORS_ALLOWED_ORIGINS",
        "",
        _cors_origins,
        "Comma-separated browser origins (`https://app.example.com`; `*` for any) whose pages "
        "may call the API over HTTP (CORS, without cookies); empty: no CORS headers. WebSockets "
        "are not covered by CORS: a page that subscribes needs its origin in "
        "WS_ALLOWED_ORIGINS too.",
    )
    throttle_maximum_available: int = _setting(
        "THROTTLE_MAXIMUM_AVAILABLE",
        "1000",
        _non_negative_int,
        "Query cost points in each API token's bucket (Shopify's `maximumAvailable`), and the "
        "most one document may cost: a costlier one is refused `MAX_COST_EXCEEDED`. 0: query "
        "cost is neither computed, reported nor limited.",
    )
    throttle_restore_rate: float = _setting(
        "THROTTLE_RESTORE_RATE",
        "50",
        _non_negative_float,
        "Query cost points a token's bucket regains per second (Shopify's `restoreRate`); an "
        "operation costing more than its bucket holds is refused `THROTTLED` (HTTP 429 with "
        "`Retry-After`). 0: as THROTTLE_MAXIMUM_AVAILABLE=0.",
    )
    anonymous_rate: float = _setting(
        "ANONYMOUS_RATE",
        "2",
        _non_negative_float,
        "Requests per second each client address may send without a valid token (none, "
        "unknown, expired or revoked); beyond ANONYMOUS_BURST they are refused `THROTTLED` "
        "(HTTP 429). 0: not limited.",
    )
    anonymous_burst: int = _setting(
        "ANONYMOUS_BURST",
        "30",
        _non_negative_int,
        "Requests without a valid token one client address may send at once before "
        "ANONYMOUS_RATE applies. 0: not limited.",
    )
    event_resync_interval: float = _setting(
        "EVENT_RESYNC_INTERVAL",
        "5",
        _positive_float,
        "Seconds between safety checks of the outbox for events the broadcast missed.",
    )
    outbox_retry_interval: float = _setting(
        "OUTBOX_RETRY_INTERVAL",
        "1",
        _positive_float,
        "Seconds between attempts to publish events while the broadcast backend is down.",
    )
    work_sweep_seconds: float = _setting(
        "WORK_SWEEP_SECONDS",
        "30",
        _positive_float,
        "Seconds the background workers (outbox publisher, store inbox, warehouse tasks, "
        "tracking pushes) sleep when nothing wakes them before they look for work anyway. A "
        "commit of this instance wakes them at once, on PostgreSQL so does work written by "
        "other processes (LISTEN/NOTIFY), and retries run when they fall due: the sweep only "
        "catches what no wake-up announced (an instance that died before its workers ran). On "
        "PostgreSQL one statement sweeps for every worker and wakes those with work waiting; "
        "each worker's own sweep comes ten times as far apart.",
    )

    sla_sweep_interval: float = _setting(
        "SLA_SWEEP_INTERVAL",
        "30",
        lambda raw: 0.0 if float(raw) == 0 else _positive_float(raw),
        "Seconds between sweeps for service-level breaches (one instance sweeps at a time, "
        "under a lease) while things happen; after a sweep that finds nothing, the next comes "
        "at the next deadline, or ten intervals later at the latest. 0: this instance never "
        "sweeps.",
    )
    tracking_retry_delay: float = _setting(
        "TRACKING_RETRY_DELAY",
        "5",
        _positive_float,
        "Seconds before the first retry of a failed tracking push to a store; doubles each time.",
    )
    tracking_max_attempts: int = _setting(
        "TRACKING_MAX_ATTEMPTS",
        "8",
        _positive_int,
        "Tracking pushes tried per shipped order before it stays FAILED for a person to look at.",
    )
    store_inbox_attempts: int = _setting(
        "STORE_INBOX_ATTEMPTS",
        "5",
        _positive_int,
        "Tries at taking in an accepted store webhook before it is left FAILED with the error.",
    )
    store_inbox_retry_delay: float = _setting(
        "STORE_INBOX_RETRY_DELAY",
        "2",
        _positive_float,
        "Seconds before the first retry of a store webhook that failed to be taken in; doubles.",
    )
    demo: bool = _setting(
        "DEMO",
        "false",
        _bool,
        "Serve the demo world's store and warehouse simulators in this process, under "
        "`/_demo/` (`make run` sets it; see `seed-demo`).",
    )
    public_url: str = _setting(
        "PUBLIC_URL",
        "",
        str,
        "Address third parties reach this service at (warehouse callbacks); empty: "
        "http://HOST:PORT.",
    )
    warehouse_timeout: float = _setting(
        "WAREHOUSE_TIMEOUT", "10", _positive_float, "Seconds a warehouse API call may take."
    )
    warehouse_retries: int = _setting(
        "WAREHOUSE_RETRIES",
        "3",
        _non_negative_int,
        "Immediate retries (with backoff) of a warehouse call after a transient failure.",
    )
    warehouse_task_attempts: int = _setting(
        "WAREHOUSE_TASK_ATTEMPTS",
        "3",
        _positive_int,
        "Runs of a push or withdraw while the warehouse is unreachable before it fails for good.",
    )
    warehouse_retry_delay: float = _setting(
        "WAREHOUSE_RETRY_DELAY",
        "5",
        _positive_float,
        "Seconds before a push or withdraw runs again after the warehouse was unreachable; "
        "doubles each time.",
    )
    warehouse_lease_seconds: float = _setting(
        "WAREHOUSE_LEASE_SECONDS",
        "120",
        _positive_float,
        "How long a worker holds a warehouse task; a crashed instance's tasks are taken over "
        "after this.",
    )
    warehouse_reconcile_after: float = _setting(
        "WAREHOUSE_RECONCILE_AFTER",
        "300",
        _positive_float,
        "Seconds without a callback after which a pushed order's status is fetched.",
    )
    busy_requests: int = _setting(
        "BUSY_REQUESTS",
        "8",
        _non_negative_int,
        "HTTP requests in flight from which the instance counts as busy: background work "
        "(warehouse calls and the outcomes they bring) then yields to requests. 0: never.",
    )
    warehouse_busy_pause: float = _setting(
        "WAREHOUSE_BUSY_PAUSE",
        "1.0",
        _non_negative_float,
        "While the instance is busy, seconds between the warehouse worker's batches of tasks "
        "(up to 64 a batch). 0: no pause.",
    )
    warehouse_callback_tolerance: float = _setting(
        "WAREHOUSE_CALLBACK_TOLERANCE",
        "300",
        _positive_float,
        "Replay window of warehouse callbacks: the most their timestamp may differ from now.",
    )
    gc_tuning: bool = _setting(
        "GC_TUNING",
        "true",
        _bool,
        "Once started, freeze the startup objects out of garbage collection and collect young "
        "objects less often (see `service/runtime.py`).",
    )
    response_cache: bool = _setting(
        "RESPONSE_CACHE",
        "true",
        _bool,
        "Keep the answers to repeated GraphQL queries in memory until an event changes what "
        "they show (see `service/response_cache.py`).",
    )
    response_cache_entries: int = _setting(
        "RESPONSE_CACHE_ENTRIES",
        "2000",
        _positive_int,
        "Most responses the response cache holds per process (least recently used go first).",
    )
    response_cache_bytes: int = _setting(
        "RESPONSE_CACHE_BYTES",
        "67108864",
        _positive_int,
        "Most bytes of responses, documents and variables the response cache holds per process.",
    )
    response_cache_ttl: float = _setting(
        "RESPONSE_CACHE_TTL",
        "30",
        _positive_float,
        "Seconds a cached response is kept at most, a bound on memory: every change reaches "
        "the cache through its event.",
    )
    persisted_queries: bool = _setting(
        "PERSISTED_QUERIES",
        "true",
        _bool,
        "Automatic persisted queries (Apollo's protocol): documents kept by their SHA-256 in "
        "Redis when `REDIS_URL` is set, else in memory.",
    )
    persisted_query_entries: int = _setting(
        "PERSISTED_QUERY_ENTRIES",
        "10000",
        _positive_int,
        "Most persisted documents kept in memory (without Redis), the most recent.",
    )
    persisted_query_ttl: int = _setting(
        "PERSISTED_QUERY_TTL",
        "86400",
        _positive_int,
        "Seconds a persisted document is kept in Redis after it was last registered.",
    )
    trusted_documents: str = _setting(
        "TRUSTED_DOCUMENTS",
        "",
        _trusted_documents,
        "Path of a manifest of trusted documents (Apollo's `persisted-query-manifest.json` or "
        "Relay's id-to-text JSON); when set, any other document is refused.",
    )
    metrics_token: str = _setting(
        "METRICS_TOKEN",
        "",
        str,
        "Bearer token `/metrics` requires; empty: `/metrics` is not served (it shows every "
        "tenant's operation names and counts).",
    )
    outbound_allowed_hosts: tuple[str, ...] = _setting(
        "OUTBOUND_ALLOWED_HOSTS",
        "",
        _hosts,
        "Comma-separated hosts (names or addresses) that store and warehouse addresses may name "
        "over plain http and on internal addresses, such as `127.0.0.1` for the simulators "
        "(`make run` sets `127.0.0.1,localhost`); any other address must be https on the "
        "public internet.",
    )
    outbound_max_response_bytes: int = _setting(
        "OUTBOUND_MAX_RESPONSE_BYTES",
        "8388608",
        _positive_int,
        "Largest answer read from a store or warehouse API, in bytes; a larger one fails the call.",
    )
    secrets_key: str = _setting(
        "SECRETS_KEY",
        "",
        _secrets_key,
        "Key that seals stored credentials (`.venv/bin/python main.py generate-key`); "
        "empty: the key file.",
    )
    secrets_key_file: str = _setting(
        "SECRETS_KEY_FILE",
        "./supplygraph.key",
        str,
        "Key file used when SECRETS_KEY is empty; created on first start.",
    )

    @property
    def broadcast_url(self) -> str:
        return self.redis_url or "memory://"

    def configure_secrets(self) -> None:
        """Install the credentials key for this process (see ``domain.secrets``)."""
        key = self.secrets_key or load_or_create_key(Path(self.secrets_key_file))
        configure(key)

    def configure_outbound(self) -> None:
        """Install the outbound-request policy for this process (``integrations.outbound``)."""
        external_addresses.configure(AddressPolicy.of(self.outbound_allowed_hosts))
        outbound.configure(max_response_bytes=self.outbound_max_response_bytes)

    @property
    def introspection_open(self) -> bool:
        return self.debug or self.introspection == "open"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every setting from ``environ`` (default: the process environment).

        All problems are collected and reported together, so a bad deployment is fixed in one go.
        ``overrides`` take already-typed values (used by tests and the CLI).
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[str] = []
        for f in fields(cls):
            if f.name in overrides:
                values[f.name] = overrides[f.name]
                continue
            meta = f.metadata
            raw = environ.get(meta["env"], meta["default"])
            try:
                values[f.name] = meta["parse"](raw)
            except ValueError as exc:
                problems.append(f"{meta['env']}={raw!r}: {exc}")
        if problems:
            raise SettingsError("invalid settings:\n  " + "\n  ".join(problems))
        return cls(**values)


def describe() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) for every setting, in declaration order."""
    return [(f.metadata["env"], f.metadata["default"], f.metadata["doc"]) for f in fields(Settings)]
