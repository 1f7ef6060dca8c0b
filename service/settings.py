"""Settings: environment variables, a ``.env`` file and a secrets directory, with checked types.

``Settings`` is a pydantic-settings model: each field is read from the variable named as it in
upper case (``port`` from ``PORT``), and its description is the meaning in the README's
configuration table, which ``describe()`` prints (``python main.py settings``), so the two cannot
drift apart. Where a value comes from, strongest first: the environment, the ``.env`` file
(``ENV_FILE``), a file named after the variable in ``SECRETS_DIR``, the default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlparse

from pydantic import (
    AfterValidator,
    AliasGenerator,
    BeforeValidator,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    WithJsonSchema,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

from domain import external_addresses
from domain.external_addresses import AddressPolicy
from domain.secrets import check_key, check_sealed, configure, load_or_create_key
from integrations import outbound

DEFAULT_DATABASE_URL = "sqlite://./supplygraph.sqlite3"


class SettingsError(ValueError):
    """Raised when one or more settings hold unusable values; the message lists all of them."""


# ----------------------------------------------------------------------------------- value types


def _flag_text(value: Any) -> Any:
    """`` true `` is ``true``, and ``DEBUG=`` (set, but to nothing) reads as false: pydantic's
    booleans take neither."""
    return (value.strip() or False) if isinstance(value, str) else value


def _comma_separated(value: Any) -> Any:
    """``a, b,`` is ``("a", "b")``: the environment holds lists as comma-separated text."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def _choice(*choices: str) -> Any:
    """Text that is one of ``choices``, given in any case (``info`` is ``INFO``)."""
    by_folded = {choice.casefold(): choice for choice in choices}
    expected = f"expected {', '.join(choices[:-1])} or {choices[-1]}"

    def choose(value: str) -> str:
        try:
            return by_folded[value.strip().casefold()]
        except KeyError:
            raise ValueError(expected) from None

    schema = WithJsonSchema({"type": "string", "enum": list(choices)})
    return Annotated[str, AfterValidator(choose), schema]


def _database_url(url: str) -> str:
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        return url
    if scheme in {"postgres", "postgresql", "asyncpg"}:
        # Tortoise's asyncpg engine is registered under "postgres"/"asyncpg".
        return "postgres" + url[len(scheme) :]
    raise ValueError("expected sqlite://PATH or postgres://USER@HOST:PORT/DB")


def _redis_url(url: str) -> str:
    if url and urlparse(url).scheme not in {"redis", "rediss"}:
        raise ValueError("expected redis://HOST:PORT/DB (or empty for in-memory broadcast)")
    return url


def _host_names(hosts: tuple[str, ...]) -> tuple[str, ...]:
    if any("/" in host or " " in host for host in hosts):
        raise ValueError("expected host names or addresses, separated by commas")
    return tuple(host.lower() for host in hosts)


def _browser_origins(origins: tuple[str, ...]) -> tuple[str, ...]:
    """Origins as browsers send them (``https://Example.com:443/`` is ``https://example.com``),
    so that the CORS middleware's exact comparison matches."""
    from strawberry.http.websocket_origin import normalize_allowed_origins

    return tuple(sorted(normalize_allowed_origins(origins)))


def _file_or_empty(path: str) -> str:
    if path and not Path(path).is_file():
        raise ValueError(f"no such file: {path}")
    return path


def _key_or_empty(key: str) -> str:
    return check_key(key) if key else ""


Flag = Annotated[bool, BeforeValidator(_flag_text)]
Port = Annotated[int, Field(ge=1, le=65535)]
FiniteNonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
CommaSeparated = Annotated[tuple[str, ...], BeforeValidator(_comma_separated)]
LogLevel = _choice("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LogFormat = _choice("auto", "json", "text")
Introspection = _choice("authenticated", "open")

# ---------------------------------------------------------------------------------- the sources

# The variables ``from_env`` reads: its ``environ`` argument, by default the process environment.
_ENVIRON: ContextVar[Mapping[str, str]] = ContextVar("settings_environ")


class _MappingSource(EnvSettingsSource):
    """Environment variables from a mapping rather than always the process environment."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return dict(self._environ)


def _env_file(environ: Mapping[str, str]) -> str | None:
    """``ENV_FILE``, by default ``.env`` in the working directory (read when present); empty:
    none."""
    return environ.get("ENV_FILE", ".env") or None


def _secrets_dir(environ: Mapping[str, str]) -> str | None:
    """``SECRETS_DIR`` when it names a directory (``/run/secrets``, as Docker and Kubernetes
    mount secrets): each setting may be a file there named after its variable."""
    path = environ.get("SECRETS_DIR")
    return path if path and Path(path).is_dir() else None


def _source_problems(environ: Mapping[str, str]) -> list[str]:
    """What is wrong with ``ENV_FILE`` and ``SECRETS_DIR``, which name where the rest is read."""
    problems = []
    env_file = environ.get("ENV_FILE")
    if env_file and not Path(env_file).is_file():
        problems.append(f"ENV_FILE={env_file!r}: no such file")
    secrets_dir = environ.get("SECRETS_DIR")
    if secrets_dir and not Path(secrets_dir).is_dir():
        problems.append(f"SECRETS_DIR={secrets_dir!r}: no such directory")
    return problems


# --------------------------------------------------------------------------------- the settings


class Settings(BaseSettings):
    """The settings of a supplygraph process, each read from its environment variable."""

    model_config = SettingsConfigDict(
        frozen=True,
        # the process environment holds hundreds of variables, and `.env` files other tools' ones
        extra="ignore",
        case_sensitive=True,
        # read from `PORT` only: validating by name too would make it read `port` as well
        alias_generator=AliasGenerator(validation_alias=str.upper),
        enable_decoding=False,  # lists are comma-separated, never JSON
    )

    database_url: Annotated[str, AfterValidator(_database_url)] = Field(
        DEFAULT_DATABASE_URL,
        description="Database: `sqlite://PATH` or `postgres://USER:PASS@HOST:PORT/DB` (asyncpg).",
    )
    database_pool_size: PositiveInt = Field(
        10,
        description="Most PostgreSQL connections an instance opens (opened as needed). Requests "
        "that read while payments of one wallet wait for its lock need connections beside them.",
    )
    redis_url: Annotated[str, AfterValidator(_redis_url)] = Field(
        "",
        description="Redis for the event broadcast between instances; empty means in-process "
        "memory.",
    )
    host: str = Field("127.0.0.1", description="Address `serve` binds to.")
    port: Port = Field(8000, description="Port `serve` listens on.")
    workers: PositiveInt = Field(1, description="uvicorn worker processes for `serve`.")
    debug: Flag = Field(False, description="Serve GraphiQL at `/graphql`.")
    introspection: Introspection = Field(
        "authenticated",
        description="`authenticated`: `__schema` and `__type` need a valid token; `open`: anyone "
        "may introspect (DEBUG opens it too).",
    )
    log_level: LogLevel = Field("INFO", description="Log level.")
    log_format: LogFormat = Field(
        "auto",
        description="`json` lines, readable `text` lines (coloured on a terminal), or `auto`: "
        "text when standard error is a terminal, else json.",
    )
    otel_exporter_otlp_endpoint: str = Field(
        "",
        description="OpenTelemetry collector to export traces to over OTLP/HTTP "
        "(`http://HOST:4318`); empty: tracing is off and costs nothing.",
    )
    otel_service_name: str = Field("supplygraph", description="Service name the traces carry.")
    max_query_depth: PositiveInt = Field(
        12, description="Deepest selection nesting a document may have."
    )
    max_query_tokens: PositiveInt = Field(3000, description="Most lexical tokens in one document.")
    max_aliases: PositiveInt = Field(30, description="Most field aliases in one document.")
    max_batch_operations: PositiveInt = Field(
        10,
        description="Most operations in one batched HTTP request (a JSON array, as Apollo's "
        "`BatchHttpLink` sends); each is authorised and limited as a single one.",
    )
    max_body_bytes: PositiveInt = Field(
        1048576, description="Largest HTTP request body and WebSocket message, in bytes."
    )
    max_subscriptions_per_connection: PositiveInt = Field(
        50, description="Most operations one WebSocket may run at once."
    )
    ws_allowed_origins: CommaSeparated = Field(
        (),
        description="Comma-separated browser origins allowed to open a WebSocket from another "
        "site (`*` for any). Same-origin and non-browser clients are always allowed.",
    )
    hsts_seconds: NonNegativeInt = Field(
        31536000,
        description="Strict-Transport-Security max-age sent on answers to https requests (behind "
        "a TLS proxy: with uvicorn's proxy headers from FORWARDED_ALLOW_IPS); 0: never sent.",
    )
    cors_allowed_origins: Annotated[CommaSeparated, AfterValidator(_browser_origins)] = Field(
        (),
        description="Comma-separated browser origins (`https://app.example.com`; `*` for any) "
        "whose pages may call the API over HTTP (CORS, without cookies); empty: no CORS headers. "
        "WebSockets are not covered by CORS: a page that subscribes needs its origin in "
        "WS_ALLOWED_ORIGINS too.",
    )
    throttle_maximum_available: NonNegativeInt = Field(
        1000,
        description="Query cost points in each API token's bucket (Shopify's "
        "`maximumAvailable`), and the most one document may cost: a costlier one is refused "
        "`MAX_COST_EXCEEDED`. 0: query cost is neither computed, reported nor limited.",
    )
    throttle_restore_rate: FiniteNonNegativeFloat = Field(
        50.0,
        description="Query cost points a token's bucket regains per second (Shopify's "
        "`restoreRate`); an operation costing more than its bucket holds is refused `THROTTLED` "
        "(HTTP 429 with `Retry-After`). 0: as THROTTLE_MAXIMUM_AVAILABLE=0.",
    )
    anonymous_rate: FiniteNonNegativeFloat = Field(
        2.0,
        description="Requests per second each client address may send without a valid token "
        "(none, unknown, expired or revoked); beyond ANONYMOUS_BURST they are refused "
        "`THROTTLED` (HTTP 429). 0: not limited.",
    )
    anonymous_burst: NonNegativeInt = Field(
        30,
        description="Requests without a valid token one client address may send at once before "
        "ANONYMOUS_RATE applies. 0: not limited.",
    )
    event_resync_interval: PositiveFloat = Field(
        5.0,
        description="Seconds between safety checks of the outbox for events the broadcast missed.",
    )
    outbox_retry_interval: PositiveFloat = Field(
        1.0,
        description="Seconds between attempts to publish events while the broadcast backend is "
        "down.",
    )
    work_lease_seconds: Annotated[float, Field(ge=0.3)] = Field(
        10.0,
        description="How long an instance holds background work it took (a warehouse task, a "
        "store webhook, a tracking push, a reconciliation round, the SLA sweep; the outbox "
        "publisher's round, which live delivery waits on, 2 s at most) without renewing it; "
        "renewed every third of it while the work runs. The work of an instance that died or "
        "hangs is taken over this long after its last renewal at most; a stopping instance gives "
        "its work back at once.",
    )
    work_sweep_seconds: PositiveFloat = Field(
        30.0,
        description="Seconds the background workers (outbox publisher, store inbox, warehouse "
        "tasks, tracking pushes) sleep when nothing wakes them before they look for work anyway. "
        "A commit of this instance wakes them at once, on PostgreSQL so does work written by "
        "other processes (LISTEN/NOTIFY), and retries run when they fall due: the sweep only "
        "catches what no wake-up announced (an instance that died before its workers ran). On "
        "PostgreSQL one statement sweeps for every worker and wakes those with work waiting, "
        "at least once per WORK_LEASE_SECONDS (so work a dead instance held is found when its "
        "lease runs out); each worker's own sweep comes ten times as far apart.",
    )
    sla_sweep_interval: NonNegativeFloat = Field(
        30.0,
        description="Seconds between sweeps for service-level breaches (one instance sweeps at "
        "a time, under a lease) while things happen; after a sweep that finds nothing, the next "
        "comes at the next deadline, or ten intervals later at the latest. 0: this instance "
        "never sweeps.",
    )
    tracking_retry_delay: PositiveFloat = Field(
        5.0,
        description="Seconds before the first retry of a failed tracking push to a store; "
        "doubles each time.",
    )
    tracking_max_attempts: PositiveInt = Field(
        8,
        description="Tracking pushes tried per shipped order before it stays FAILED for a person "
        "to look at.",
    )
    store_inbox_attempts: PositiveInt = Field(
        5,
        description="Tries at taking in an accepted store webhook before it is left FAILED with "
        "the error.",
    )
    store_inbox_retry_delay: PositiveFloat = Field(
        2.0,
        description="Seconds before the first retry of a store webhook that failed to be taken "
        "in; doubles.",
    )
    demo: Flag = Field(
        False,
        description="Serve the demo world's store and warehouse simulators in this process, "
        "under `/_demo/` (`make run` sets it; see `seed-demo`).",
    )
    public_url: str = Field(
        "",
        description="Address third parties reach this service at (warehouse callbacks); empty: "
        "http://HOST:PORT.",
    )
    warehouse_timeout: PositiveFloat = Field(
        10.0, description="Seconds a warehouse API call may take."
    )
    warehouse_retries: NonNegativeInt = Field(
        3,
        description="Immediate retries (with backoff) of a warehouse call after a transient "
        "failure.",
    )
    warehouse_task_attempts: PositiveInt = Field(
        3,
        description="Runs of a push or withdraw while the warehouse is unreachable before it "
        "fails for good.",
    )
    warehouse_retry_delay: PositiveFloat = Field(
        5.0,
        description="Seconds before a push or withdraw runs again after the warehouse was "
        "unreachable; doubles each time.",
    )
    warehouse_reconcile_after: PositiveFloat = Field(
        300.0,
        description="Seconds without a callback after which a pushed order's status is fetched.",
    )
    busy_requests: NonNegativeInt = Field(
        8,
        description="HTTP requests in flight from which the instance counts as busy: background "
        "work (warehouse calls and the outcomes they bring) then yields to requests. 0: never.",
    )
    warehouse_busy_pause: FiniteNonNegativeFloat = Field(
        1.0,
        description="While the instance is busy, seconds between the warehouse worker's batches "
        "of tasks (up to 64 a batch). 0: no pause.",
    )
    warehouse_callback_tolerance: PositiveFloat = Field(
        300.0,
        description="Replay window of warehouse callbacks: the most their timestamp may differ "
        "from now.",
    )
    gc_tuning: Flag = Field(
        True,
        description="Once started, freeze the startup objects out of garbage collection and "
        "collect young objects less often (see `service/runtime.py`).",
    )
    response_cache: Flag = Field(
        True,
        description="Keep the answers to repeated GraphQL queries in memory until an event "
        "changes what they show (see `service/response_cache.py`).",
    )
    response_cache_entries: PositiveInt = Field(
        2000,
        description="Most responses the response cache holds per process (least recently used "
        "go first).",
    )
    response_cache_bytes: PositiveInt = Field(
        67108864,
        description="Most bytes of responses, documents and variables the response cache holds "
        "per process.",
    )
    response_cache_ttl: PositiveFloat = Field(
        30.0,
        description="Seconds a cached response is kept at most, a bound on memory: every change "
        "reaches the cache through its event.",
    )
    persisted_queries: Flag = Field(
        True,
        description="Automatic persisted queries (Apollo's protocol): documents kept by their "
        "SHA-256 in Redis when `REDIS_URL` is set, else in memory.",
    )
    persisted_query_entries: PositiveInt = Field(
        10000,
        description="Most persisted documents kept in memory (without Redis), the most recent.",
    )
    persisted_query_ttl: PositiveInt = Field(
        86400,
        description="Seconds a persisted document is kept in Redis after it was last registered.",
    )
    trusted_documents: Annotated[str, AfterValidator(_file_or_empty)] = Field(
        "",
        description="Path of a manifest of trusted documents (Apollo's "
        "`persisted-query-manifest.json` or Relay's id-to-text JSON); when set, any other "
        "document is refused.",
    )
    metrics_token: str = Field(
        "",
        repr=False,
        description="Bearer token `/metrics` requires; empty: `/metrics` is not served (it shows "
        "every tenant's operation names and counts).",
    )
    outbound_allowed_hosts: Annotated[CommaSeparated, AfterValidator(_host_names)] = Field(
        (),
        description="Comma-separated hosts (names or addresses) that store and warehouse "
        "addresses may name over plain http and on internal addresses, such as `127.0.0.1` for "
        "the simulators (`make run` sets `127.0.0.1,localhost`); any other address must be "
        "https on the public internet.",
    )
    outbound_max_response_bytes: PositiveInt = Field(
        8388608,
        description="Largest answer read from a store or warehouse API, in bytes; a larger one "
        "fails the call.",
    )
    secrets_key: Annotated[str, AfterValidator(_key_or_empty)] = Field(
        "",
        repr=False,
        description="Key that seals stored credentials (`.venv/bin/python main.py "
        "generate-key`); empty: the key file.",
    )
    secrets_key_file: str = Field(
        "./supplygraph.key",
        description="Key file used when SECRETS_KEY is empty; created on a first start, when the "
        "database holds no sealed credentials yet (every instance needs the same key).",
    )

    @property
    def broadcast_url(self) -> str:
        return self.redis_url or "memory://"

    def configure_secrets(self) -> None:
        """Install the credentials key for this process when there is one (``SECRETS_KEY``, or
        the key file); ``open_secrets`` makes the key file once the database shows none is
        needed (see ``domain.secrets``)."""
        path = Path(self.secrets_key_file)
        if self.secrets_key or path.exists():
            configure(self.secrets_key or load_or_create_key(path))

    async def open_secrets(self) -> None:
        """With the database open: refuse (``SecretsKeyRefused``) a key that does not open the
        sealed credentials there, or no key while there are some; else make the key file if
        there is no key yet."""
        path = Path(self.secrets_key_file)
        source = self._key_source(path)
        self.configure_secrets()
        await check_sealed(key_source=source, make_key=lambda: load_or_create_key(path))

    def _key_source(self, path: Path) -> str:
        if self.secrets_key:
            return "SECRETS_KEY"
        return f"the key file {path}" if path.exists() else f"no SECRETS_KEY, no key file {path}"

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
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Overrides, then the environment (``from_env``'s), its ``.env`` file, its secrets
        directory; the defaults come last."""
        environ = _ENVIRON.get(os.environ)
        return (
            init_settings,
            _MappingSource(settings_cls, environ),
            DotEnvSettingsSource(settings_cls, env_file=_env_file(environ)),
            SecretsSettingsSource(settings_cls, secrets_dir=_secrets_dir(environ)),
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every setting from ``environ`` (default: the process environment), the ``.env``
        file and the secrets directory it names.

        All problems are collected and reported together, so a bad deployment is fixed in one go.
        ``overrides`` take already-typed values (used by tests and the CLI).
        """
        environ = os.environ if environ is None else environ
        unknown = overrides.keys() - cls.model_fields.keys()
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        problems = _source_problems(environ)
        token = _ENVIRON.set(environ)
        try:
            settings = cls(**{_variable(name): value for name, value in overrides.items()})
        except ValidationError as exc:
            problems += [_problem(error) for error in exc.errors()]
        finally:
            _ENVIRON.reset(token)
        if problems:
            raise SettingsError("invalid settings:\n  " + "\n  ".join(problems))
        return settings


# ------------------------------------------------------------------------------------ messages


def _variable(name: str) -> str:
    alias = Settings.model_fields[name].validation_alias
    assert isinstance(alias, str)
    return alias


_FIELD_OF_VARIABLE = {_variable(name): name for name in Settings.model_fields}

# pydantic's error types in plain words, saying what is expected
_REASONS = {
    "bool_parsing": "expected one of true/false/1/0/yes/no/on/off",
    "bool_type": "expected one of true/false/1/0/yes/no/on/off",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "int_type": "expected a whole number",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "finite_number": "expected a finite number",
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be {ge} or more",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be {le} or less",
    "string_type": "expected text",
    "tuple_type": "expected a comma-separated list",
}


def _reason(error: ErrorDetails, field: FieldInfo) -> str:
    ctx = {key: _as_written(value) for key, value in error.get("ctx", {}).items()}
    if error["type"] == "value_error":
        return ctx["error"]  # the message of a validator above
    bounds = {
        key: _as_written(getattr(m, key))
        for m in field.metadata
        for key in ("ge", "le")
        if hasattr(m, key)
    }
    if error["type"] in {"greater_than_equal", "less_than_equal"} and bounds.keys() >= {"ge", "le"}:
        return f"must be between {bounds['ge']} and {bounds['le']}"
    if error["type"] in _REASONS:
        return _REASONS[error["type"]].format(**ctx)
    return error["msg"][:1].lower() + error["msg"][1:]


def _problem(error: ErrorDetails) -> str:
    """``VAR='raw value': reason`` for one of pydantic's errors."""
    variable = str(error["loc"][0])
    field = Settings.model_fields[_FIELD_OF_VARIABLE[variable]]
    return f"{variable}={error['input']!r}: {_reason(error, field)}"


# --------------------------------------------------------------------------- documentation


def _as_written(default: Any) -> str:
    """A default as it is written in the environment: ``true``, ``5``, ``a,b``."""
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    if isinstance(default, tuple):
        return ",".join(default)
    return str(default)


def describe() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) for every setting, in declaration order."""
    return [
        (_variable(name), _as_written(field.default), field.description or "")
        for name, field in Settings.model_fields.items()
    ]


def json_schema() -> dict[str, Any]:
    """The JSON schema of the settings, its properties named by their environment variables,
    with their types, defaults and meanings (``python main.py settings --json-schema``)."""
    return Settings.model_json_schema(mode="validation")
