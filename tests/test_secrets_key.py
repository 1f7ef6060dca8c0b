"""One secrets key per deployment (issue 22): once the database holds sealed credentials, an
instance whose key does not open them, or that has no key at all, refuses to start with a
message that says what to do, instead of making a key of its own (which would then fail on every
store and warehouse credential it reads). Tried as an operator meets it: ``main.py`` commands
and ``main.py serve`` started beside a served instance, on its database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from domain.secrets import generate_key
from tests.conftest import MakeMember, ServerFactory
from tests.support.graphql_client import GraphQLHttp
from tests.support.server import free_port
from tests.test_order_flow import connect_store, sim
from tests.test_store_integration import Sim

__all__ = ["sim"]
ROOT = Path(__file__).resolve().parent.parent


def _main(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "main.py", *args],
        cwd=ROOT,
        env={**os.environ, "LOG_FORMAT": "text", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def test_an_instance_without_the_deployment_s_key_refuses_to_start(
    make_server: ServerFactory, make_member: MakeMember, sim: Sim, tmp_path: Path
) -> None:
    server = await make_server()
    client = GraphQLHttp(server.url)
    try:
        buyer = await make_member("BUYER")
        await connect_store(client, buyer, sim)  # a store's credentials, sealed
    finally:
        await client.close()
    database = {"DATABASE_URL": server.settings.database_url}

    # another key: the command stops before touching anything, and says why
    other = _main({**database, "SECRETS_KEY": generate_key()}, "create-token", "--email", "x@y.z")
    assert other.returncode == 1, other.stdout + other.stderr
    assert "do not open with this instance's key (SECRETS_KEY)" in other.stderr, other.stderr
    assert "same SECRETS_KEY" in other.stderr

    # no key and no key file: refused, and no key file is made
    key_file = tmp_path / "supplygraph.key"
    none = _main(
        {**database, "SECRETS_KEY": "", "SECRETS_KEY_FILE": str(key_file)},
        "create-token",
        "--email",
        "x@y.z",
    )
    assert none.returncode == 1, none.stdout + none.stderr
    assert f"this instance has none (no SECRETS_KEY, no key file {key_file})" in none.stderr
    assert not key_file.exists()

    # served: the instance exits at start-up with the reason in its log
    served = _main(
        {**database, "SECRETS_KEY": generate_key(), "PORT": str(free_port()), "REDIS_URL": ""},
        "serve",
    )
    assert served.returncode != 0
    assert "supplygraph refuses to start" in served.stderr, served.stderr[-3000:]

    # the deployment's key: the same command runs (and finds no such user)
    same = _main(
        {**database, "SECRETS_KEY": server.settings.secrets_key}, "create-token", "--email", "x@y.z"
    )
    assert same.returncode == 1 and "no user with e-mail" in same.stderr, same.stderr


def test_a_first_start_makes_the_key_file(tmp_path: Path) -> None:
    """A database without sealed credentials and no key: the key file is made (as ``make run``
    on a fresh clone needs), mode 0600, and used from then on."""
    database = {"DATABASE_URL": f"sqlite://{tmp_path / 'fresh.sqlite3'}"}
    key_file = tmp_path / "supplygraph.key"
    env = {**database, "SECRETS_KEY": "", "SECRETS_KEY_FILE": str(key_file)}
    assert _main(env, "migrate").returncode == 0
    made = _main(env, "create-org", "--name", "First", "--kind", "buyer", "--owner-email", "a@b.c")
    assert made.returncode == 0, made.stderr
    assert key_file.exists() and oct(key_file.stat().st_mode & 0o777) == "0o600"
