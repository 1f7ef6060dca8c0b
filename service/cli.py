"""The command line: ``python main.py COMMAND``."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

from service.settings import Settings, SettingsError, describe

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schema.graphql"


@asynccontextmanager
async def _database(settings: Settings) -> Any:
    from tortoise import Tortoise

    from domain.db import tortoise_config

    settings.configure_secrets()
    settings.configure_outbound()
    await Tortoise.init(config=tortoise_config(settings.database_url))
    try:
        yield
    finally:
        await Tortoise.close_connections()


async def apply_migrations(database_url: str) -> None:
    from tortoise import Tortoise
    from tortoise.migrations.api import migrate

    from domain.db import tortoise_config

    try:
        await migrate(config=tortoise_config(database_url))
    finally:
        await Tortoise.close_connections()


def _cmd_serve(settings: Settings, args: argparse.Namespace) -> None:
    from compat import uvicorn  # uvicorn.run, without waking ten times a second when idle

    host, port = args.host or settings.host, args.port or settings.port
    print(
        f"supplygraph: GraphQL http://{host}:{port}/graphql · "
        f"dashboard http://{host}:{port}/dashboard",
        flush=True,
    )
    uvicorn.run(
        "main:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=args.workers or settings.workers,
        ws_max_size=settings.max_body_bytes,
        ws_ping_interval=20,
        ws_ping_timeout=20,
        log_config=None,
        access_log=False,
        server_header=False,  # no "server: uvicorn" banner (service/security_headers.py)
        timeout_graceful_shutdown=10,
    )


def _cmd_migrate(settings: Settings, args: argparse.Namespace) -> None:
    asyncio.run(apply_migrations(settings.database_url))
    print("migrations applied")


async def _create_org(settings: Settings, args: argparse.Namespace) -> None:
    from domain.organisations import commands as organisations
    from domain.organisations import tokens
    from domain.organisations.models import OrganisationKind

    async with _database(settings):
        org, owner = await organisations.create_organisation(
            name=args.name,
            kind=OrganisationKind(args.kind),
            owner_email=args.owner_email,
            owner_name=args.owner_name or args.owner_email,
        )
        print(f"organisation {org.id} ({org.kind}) {org.name!r}; owner user {owner.id}")
        if args.with_token:
            _, secret = await tokens.issue_token(user=owner, name="initial")
            print(f"token (shown once): {secret}")


async def _create_token(settings: Settings, args: argparse.Namespace) -> None:
    from domain.organisations import queries, tokens

    async with _database(settings):
        # an e-mail is unique within an organisation only: several may use it
        users = await queries.users_with_email(args.email, organisation_id=args.organisation)
        if not users:
            where = "" if args.organisation is None else f" in organisation {args.organisation}"
            raise SystemExit(f"no user with e-mail {args.email!r}{where}")
        if len(users) > 1:
            listed = ", ".join(str(u.organisation_id) for u in users)
            raise SystemExit(
                f"{len(users)} users have the e-mail {args.email!r} (organisations {listed}): "
                "choose one with --organisation ID"
            )
        _, secret = await tokens.issue_token(user=users[0], name=args.name)
        print(secret)


async def _seed_demo(settings: Settings, args: argparse.Namespace) -> None:
    from service import demo

    async with _database(settings):
        seeded = await demo.seed_demo()
    for line in seeded.summary():
        print(line)
    for token in seeded.tokens.all():
        print(token.line())


async def _simulate(settings: Settings, args: argparse.Namespace) -> None:
    import httpx

    from service import demo, simulate

    task = asyncio.current_task()
    assert task is not None
    # SIGTERM stops it as Ctrl-C does: cancelled, it cleans up on the way out
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    url = (args.url or settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/")
    async with httpx.AsyncClient() as http:  # before issuing tokens it could not revoke
        await http.get(f"{url}/healthz")
    async with _database(settings):
        tokens = await demo.issue_tokens(name="simulate")
    await simulate.run(
        url=url,
        tokens=tokens,
        interval=args.interval,
        steps=args.steps,
        seed=args.seed,
        deadlines=args.demo_deadlines,
    )


def _cmd_simulate(settings: Settings, args: argparse.Namespace) -> None:
    if args.interval < 0 or (args.steps is not None and args.steps < 1):
        raise SystemExit("supplygraph: --interval must be >= 0 and --steps >= 1")
    import httpx

    from service.simulate import SimulationError

    try:
        # Ctrl-C or SIGTERM: it has cleaned up and said how far it got
        with suppress(KeyboardInterrupt, asyncio.CancelledError):
            asyncio.run(_simulate(settings, args))
    except SimulationError as exc:
        raise SystemExit(f"supplygraph: {exc}") from None
    except httpx.TransportError as exc:
        message = f"supplygraph: the server does not answer ({exc!r}); is it running?"
        raise SystemExit(message) from None


def _cmd_export_schema(settings: Settings, args: argparse.Namespace) -> None:
    from schema.build import create_schema

    sdl = create_schema().as_str() + "\n"
    if args.output == "-":
        sys.stdout.write(sdl)
    else:
        Path(args.output).write_text(sdl, encoding="utf-8")
        print(f"schema written to {args.output}")


def _cmd_settings(settings: Settings, args: argparse.Namespace) -> None:
    print("| Variable | Default | Meaning |\n| --- | --- | --- |")
    for env, default, doc in describe():
        print(f"| `{env}` | `{default}` | {doc} |" if default else f"| `{env}` | (empty) | {doc} |")


def _cmd_generate_key(settings: Settings, args: argparse.Namespace) -> None:
    from domain.secrets import generate_key

    print(generate_key())


def _async(fn: Callable[[Settings, argparse.Namespace], Awaitable[None]]) -> Any:
    return lambda settings, args: asyncio.run(fn(settings, args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python main.py", description="supplygraph: GraphQL API for supply orders."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="serve the API (uvicorn)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.set_defaults(run=_cmd_serve)

    sub.add_parser("migrate", help="apply database migrations").set_defaults(run=_cmd_migrate)

    org = sub.add_parser("create-org", help="create an organisation and its OWNER")
    org.add_argument("--name", required=True)
    org.add_argument("--kind", required=True, choices=["BUYER", "SUPPLIER"])
    org.add_argument("--owner-email", required=True)
    org.add_argument("--owner-name")
    org.add_argument("--with-token", action="store_true", help="also issue a token for the owner")
    org.set_defaults(run=_async(_create_org))

    token = sub.add_parser("create-token", help="issue an API token for a user (printed once)")
    token.add_argument("--email", required=True)
    token.add_argument(
        "--organisation",
        type=int,
        help="the user's organisation (id): needed when several organisations use the e-mail",
    )
    token.add_argument("--name", default="cli")
    token.set_defaults(run=_async(_create_token))

    sub.add_parser(
        "seed-demo",
        help="create the demo organisations, catalogue and orders; print a token for each owner",
    ).set_defaults(run=_async(_seed_demo))

    simulate = sub.add_parser(
        "simulate",
        help="keep demo orders, withdrawals and breaches flowing through a running server's API",
    )
    simulate.add_argument("--url", help="the server (default: PUBLIC_URL, else http://HOST:PORT)")
    simulate.add_argument("--interval", type=float, default=2.0, help="seconds between actions")
    simulate.add_argument("--steps", type=int, help="stop after this many actions (default: never)")
    simulate.add_argument("--seed", type=int, help="seed of the random choices (repeatable runs)")
    simulate.add_argument(
        "--demo-deadlines",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="shorten the demo organisations' service-level deadlines to minutes while running",
    )
    simulate.set_defaults(run=_cmd_simulate)

    export = sub.add_parser("export-schema", help="write the GraphQL schema (SDL)")
    export.add_argument("--output", default=str(SCHEMA_FILE), help="file, or - for stdout")
    export.set_defaults(run=_cmd_export_schema)

    sub.add_parser(
        "settings", help="print every environment variable with its default (Markdown)"
    ).set_defaults(run=_cmd_settings)
    sub.add_parser(
        "generate-key", help="print a new SECRETS_KEY for sealing stored credentials"
    ).set_defaults(run=_cmd_generate_key)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        raise SystemExit(f"supplygraph: {exc}") from None
    from domain.errors import DomainError

    try:
        args.run(settings, args)
    except DomainError as exc:
        raise SystemExit(f"supplygraph: {exc.message} ({exc.code.value})") from None
