"""Test harness: a migrated real database per run, real servers per test, real clients.

Tests create their own organisations (unique e-mails), so they share one database without
truncation and isolation between organisations is exercised all the time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import pytest

from domain import external_addresses
from domain.secrets import generate_key
from schema.global_ids import gid
from service.settings import Settings
from tests.support.browser import chromium
from tests.support.graphql_client import GraphQLHttp, GraphQLWebSocket
from tests.support.server import RunningServer, start_server
from tests.support.services import IN_CI, SKIPPED_SUITES, answers, postgres_url

ROOT = Path(__file__).resolve().parent.parent
# Abuse limits (query cost, requests per address) are off in every server the suite starts, in
# this process or another (``app_process``, ``make run``, the bench): tests send many requests
# quickly with few tokens. ``tests/test_query_cost.py`` turns them on for its own servers.
UNLIMITED = {"THROTTLE_MAXIMUM_AVAILABLE": "0", "ANONYMOUS_RATE": "0"}
os.environ.update(UNLIMITED)

# The store and warehouse simulators the tests call run on this machine: the operator's
# allow-list, as `make test` sets it, for this process and every server it starts.
os.environ.setdefault("OUTBOUND_ALLOWED_HOSTS", "127.0.0.1,localhost")
# /metrics is served with a token only; the tests' servers (and the processes they start) use
# this one (``METRICS_HEADERS``)
os.environ.setdefault("METRICS_TOKEN", "test-metrics-token")
METRICS_HEADERS = {"authorization": f"Bearer {os.environ['METRICS_TOKEN']}"}
LOCAL_POLICY = external_addresses.AddressPolicy.of(os.environ["OUTBOUND_ALLOWED_HOSTS"].split(","))


@pytest.fixture(autouse=True)
def _local_simulators_allowed() -> None:
    """Every test starts with the allow-list above (an app started with other settings
    installs its own policy for the whole process)."""
    external_addresses.configure(LOCAL_POLICY)


def migrate(database_url: str) -> None:
    """Apply the real migrations, as ``make run`` does, in a separate process."""
    result = subprocess.run(
        [sys.executable, "main.py", "migrate"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def _with_database(url: str, name: str) -> str:
    parsed = urlparse(url)
    return urlunparse(parsed._replace(path="/" + name))


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, migrated database for this run: PostgreSQL if DATABASE_URL says so."""
    pg = postgres_url()
    if pg is None:
        url = f"sqlite://{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"
        migrate(url)
        yield url
        return
    if not answers(pg, 5432):
        message = f"PostgreSQL at {pg} does not answer"
        if IN_CI:
            pytest.exit(message + " (CI=true: a missing service is a failure)", returncode=1)
        SKIPPED_SUITES["postgres"] = message
        pytest.skip(message)
    import asyncpg

    name = f"supplygraph_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = pg.replace("postgres://", "postgresql://", 1)

    async def admin_sql(sql: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    import asyncio

    asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    url = _with_database(pg, name)
    migrate(url)
    yield url
    asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def base_settings(database_url: str) -> Settings:
    settings = Settings.from_env(
        {
            "DATABASE_URL": database_url,
            "LOG_FORMAT": "text",
            "EVENT_RESYNC_INTERVAL": "1",
            "OUTBOX_RETRY_INTERVAL": "0.2",
            # time-driven SLA sweeps are driven by the tests that want them (tests/test_sla.py)
            "SLA_SWEEP_INTERVAL": "0",
            "OUTBOUND_ALLOWED_HOSTS": os.environ["OUTBOUND_ALLOWED_HOSTS"],
            "METRICS_TOKEN": os.environ["METRICS_TOKEN"],
            "SECRETS_KEY": generate_key(),
            # this process starts hundreds of servers; GC tuning is per process (test_runtime)
            "GC_TUNING": "false",
            **UNLIMITED,
        }
    )
    # this process keys as its servers do: tests read event ids back (tests/support/events.py);
    # and so do the instances tests start as processes on the same database (one key per
    # deployment: an instance whose key does not open the sealed credentials refuses to start)
    settings.configure_secrets()
    os.environ["SECRETS_KEY"] = settings.secrets_key
    return settings


ServerFactory = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def make_server(base_settings: Settings) -> AsyncIterator[ServerFactory]:
    """Start servers with ``base_settings`` plus overrides; all are stopped after the test."""
    servers: list[RunningServer] = []

    async def factory(**overrides: Any) -> RunningServer:
        settings = base_settings.model_copy(update=overrides)
        server = await start_server(settings)
        servers.append(server)
        return server

    yield factory
    for server in reversed(servers):
        await server.stop()


@pytest.fixture
async def server(make_server: ServerFactory) -> RunningServer:
    return await make_server()


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[GraphQLHttp]:
    http = GraphQLHttp(server.url)
    yield http
    await http.close()


@dataclass
class Member:
    """An organisation with one user and a token for that user."""

    organisation_id: int
    user_id: int
    email: str
    token: str
    token_id: int

    @property
    def gid(self) -> str:
        """The organisation's global id, as the API names it."""
        return gid("Organisation", self.organisation_id)

    @property
    def user_gid(self) -> str:
        return gid("User", self.user_id)

    @property
    def token_gid(self) -> str:
        return gid("ApiToken", self.token_id)


MakeMember = Callable[..., Awaitable[Member]]


@pytest.fixture
def make_member(make_server: ServerFactory) -> MakeMember:
    """Create an organisation (or a user in one) through the domain, as the CLI does.

    Needs a running server of this test (its lifespan holds the database connection).
    """
    from domain.organisations import commands as organisations
    from domain.organisations import tokens
    from domain.organisations.models import OrganisationKind, Role, User

    async def factory(
        kind: str = "BUYER", *, role: str = "OWNER", organisation_id: int | None = None
    ) -> Member:
        email = f"{uuid.uuid4().hex[:12]}@example.test"
        if organisation_id is None:
            _, user = await organisations.create_organisation(
                name=f"Org {email}",
                kind=OrganisationKind(kind),
                owner_email=email,
                owner_name="Owner",
            )
            if role != "OWNER":
                user.role = Role(role)
                await user.save(update_fields=["role"])
        else:
            user = await User.create(
                organisation_id=organisation_id, email=email, name="Member", role=Role(role)
            )
        token, secret = await tokens.issue_token(user=user, name="test")
        return Member(user.organisation_id, user.id, email, secret, token.id)

    return factory


@pytest.fixture
async def ws_connect(
    server: RunningServer,
) -> AsyncIterator[Callable[..., Awaitable[GraphQLWebSocket]]]:
    sockets: list[GraphQLWebSocket] = []

    async def connect(token: str | None = None, **kwargs: Any) -> GraphQLWebSocket:
        ws = await GraphQLWebSocket.connect(server.ws_url, token=token, **kwargs)
        sockets.append(ws)
        return ws

    yield connect
    for ws in sockets:
        await ws.close()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    """Headless Chromium for this run (``tests/support/browser.py``): a skip, or a failure
    under CI=true, where it or Playwright is missing."""
    async with chromium() as launched:
        yield launched


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SKIPPED_SUITES:
        terminalreporter.section("suites skipped for missing services")
        for suite, reason in sorted(SKIPPED_SUITES.items()):
            terminalreporter.write_line(f"{suite}: {reason}")
