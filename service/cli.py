"""The command line: ``python main.py COMMAND``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from service.settings import Settings, SettingsError, describe

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schema.graphql"


@asynccontextmanager
async def _database(settings: Settings) -> Any:
    from tortoise import Tortoise

    from domain.db import tortoise_config

    settings.configure_secrets()
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
    import uvicorn

    uvicorn.run(
        "main:app_factory",
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        workers=args.workers or settings.workers,
        ws_max_size=settings.max_body_bytes,
        ws_ping_interval=20,
        ws_ping_timeout=20,
        log_config=None,
        access_log=False,
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
    from domain.organisations import tokens
    from domain.organisations.models import User

    async with _database(settings):
        user = await User.get_or_none(email=args.email.strip().lower())
        if user is None:
            raise SystemExit(f"no user with e-mail {args.email!r}")
        _, secret = await tokens.issue_token(user=user, name=args.name)
        print(secret)


async def _seed_demo(settings: Settings, args: argparse.Namespace) -> None:
    from domain.organisations import commands as organisations
    from domain.organisations import tokens
    from domain.organisations.models import OrganisationKind, User

    demo = [
        ("Demo Supplier", OrganisationKind.SUPPLIER, "owner@supplier.demo"),
        ("Demo Seller", OrganisationKind.BUYER, "owner@seller.demo"),
        ("Demo Distributor", OrganisationKind.BUYER, "owner@distributor.demo"),
    ]
    async with _database(settings):
        for name, kind, email in demo:
            user = await User.get_or_none(email=email)
            if user is None:
                _, user = await organisations.create_organisation(
                    name=name, kind=kind, owner_email=email, owner_name=f"{name} owner"
                )
            _, secret = await tokens.issue_token(user=user, name="demo")
            print(f"{name:<18} {kind.value:<9} {email:<24} token: {secret}")


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
    token.add_argument("--name", default="cli")
    token.set_defaults(run=_async(_create_token))

    sub.add_parser(
        "seed-demo", help="create demo organisations and print a token for each"
    ).set_defaults(run=_async(_seed_demo))

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
