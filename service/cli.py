"""The command line: ``supplygraph COMMAND`` (the console script the install puts in the venv)
or ``python main.py COMMAND`` from the checkout; ``--help`` on either lists the commands.

Built on typer: a command is a function, its options are its parameters, each with its help
beside it. The errors a user can fix (a bad setting, a command the domain refuses, a server
that does not answer) end as one ``supplygraph: ...`` line on stderr and exit code 1, never a
traceback. The long commands show their progress on a terminal (``service/cli_progress.py``).
Heavy imports (the schema, uvicorn, the database's engine) wait for the command that needs
them, so ``--help`` and completion answer quickly.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import signal
import sys
from collections.abc import Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from domain.errors import DomainError
from domain.organisations.models import OrganisationKind
from domain.secrets import SecretsKeyRefused
from service import cli_progress
from service.settings import Settings, SettingsError, describe, json_schema

SCHEMA_FILE = str(Path(__file__).resolve().parent.parent / "schema.graphql")
# typer's options that print and install the shell's completion script for the program name
COMPLETION_OPTIONS = ("install_completion", "show_completion")


def fail(message: str) -> NoReturn:
    """End the command: ``supplygraph: MESSAGE`` on stderr, exit code 1."""
    typer.echo(f"supplygraph: {message}", err=True)
    raise typer.Exit(1)


class Commands(TyperGroup):
    """The command group; turns the errors a user can fix into one line and exit code 1."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except SettingsError as exc:
            fail(str(exc))
        except DomainError as exc:
            fail(f"{exc.message} ({exc.code.value})")
        except SecretsKeyRefused as exc:
            fail(str(exc))


app = typer.Typer(
    name="supplygraph",
    cls=Commands,
    help="supplygraph: GraphQL API for supply orders. Its settings are environment variables "
    "(the settings command lists them).",
    no_args_is_help=True,
)


def load_settings() -> Settings:
    """The settings from the environment, read when a command needs them (so that ``--help``
    works with a bad one); a bad one raises ``SettingsError``, which ``Commands`` reports."""
    return Settings.from_env()


@asynccontextmanager
async def _database(settings: Settings) -> Any:
    from tortoise import Tortoise

    from domain.db import tortoise_config

    settings.configure_outbound()
    await Tortoise.init(config=tortoise_config(settings.database_url))
    try:
        await settings.open_secrets()
        yield
    finally:
        await Tortoise.close_connections()


# --- serve -----------------------------------------------------------------------------------


def _browsable(host: str) -> str:
    """The host part of a URL a browser on this machine can open, for a bind address."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _dashboard_built() -> bool:
    """Whether ``/dashboard`` can render: its page, its modules and its vendored client."""
    from service import dashboard

    return all(
        path.is_file()
        for path in (
            dashboard.TEMPLATE,
            dashboard.APP_DIR / dashboard.ENTRY_MODULE,
            dashboard.VENDOR_MANIFEST,
        )
    )


def addresses(settings: Settings, *, host: str, port: int) -> list[str]:
    """What ``serve`` prints before it starts: where the API, GraphiQL and the dashboard are."""
    base = f"http://{_browsable(host)}:{port}"
    lines = [f"supplygraph: GraphQL API  {base}/graphql"]
    if settings.debug:
        lines.append(f"supplygraph: GraphiQL     {base}/graphql (in a browser; DEBUG is on)")
    if _dashboard_built():
        lines.append(f"supplygraph: dashboard    {base}/dashboard")
    return lines


@app.command(help="Serve the API with uvicorn, printing where it is first.")
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to bind. Default: the HOST setting.")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Port to listen on. Default: the PORT setting."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Worker processes. Default: the WORKERS setting."),
    ] = None,
) -> None:
    from compat import uvicorn  # uvicorn.run, without waking ten times a second when idle

    settings = load_settings()
    host, port = host or settings.host, port or settings.port
    for line in addresses(settings, host=host, port=port):
        print(line)
    sys.stdout.flush()
    uvicorn.run(
        "main:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=workers or settings.workers,
        ws_max_size=settings.max_body_bytes,
        ws_ping_interval=20,
        ws_ping_timeout=20,
        log_config=None,
        access_log=False,
        server_header=False,  # no "server: uvicorn" banner (service/security_headers.py)
        timeout_graceful_shutdown=10,
    )


# --- migrate ---------------------------------------------------------------------------------


async def apply_migrations(database_url: str, *, progress: cli_progress.Steps | None = None) -> int:
    """Apply the migrations the database lacks; how many were applied. ``progress``, if given,
    is called as ``progress(migration, done, total)`` as each one starts and ends."""
    from tortoise import Tortoise
    from tortoise.migrations.api import migrate

    from domain.db import tortoise_config

    total = done = 0

    def planned(connection: str, plan: list[Any], fake: bool, dry_run: bool) -> None:
        nonlocal total
        total += len(plan)
        if progress is not None:
            progress("checking", done, total)

    def stepped(event: str, app_label: str, name: str) -> None:
        nonlocal done
        done += event.endswith("_done")  # apply_start, apply_done, rollback_start ...
        if progress is not None:
            progress(f"{app_label}.{name}", done, total)

    try:
        await migrate(config=tortoise_config(database_url), reporter=planned, progress=stepped)
    finally:
        await Tortoise.close_connections()
    return done


@app.command(help="Apply the database migrations not applied yet (safe on every deploy).")
def migrate() -> None:
    settings = load_settings()
    with cli_progress.steps("migrations") as progress:
        applied = asyncio.run(apply_migrations(settings.database_url, progress=progress))
    print(f"migrations applied: {applied}" if applied else "migrations applied: none needed")


# --- organisations and tokens ---------------------------------------------------------------


async def _create_org(
    settings: Settings,
    *,
    name: str,
    kind: OrganisationKind,
    owner_email: str,
    owner_name: str | None,
    with_token: bool,
) -> None:
    from domain.organisations import commands as organisations
    from domain.organisations import tokens

    async with _database(settings):
        org, owner = await organisations.create_organisation(
            name=name, kind=kind, owner_email=owner_email, owner_name=owner_name or owner_email
        )
        print(f"organisation {org.id} ({org.kind}) {org.name!r}; owner user {owner.id}")
        if with_token:
            _, secret = await tokens.issue_token(user=owner, name="initial")
            print(f"token (shown once): {secret}")


@app.command("create-org", help="Create an organisation and its OWNER user.")
def create_org(
    name: Annotated[str, typer.Option(help="The organisation's name.")],
    kind: Annotated[
        OrganisationKind,
        typer.Option(
            case_sensitive=False,
            help="BUYER (sellers and distributors: stores, a wallet) or SUPPLIER (quotes and "
            "ships); any case.",
        ),
    ],
    owner_email: Annotated[str, typer.Option(help="The owner's e-mail.")],
    owner_name: Annotated[
        str | None, typer.Option(help="The owner's name. Default: the e-mail.")
    ] = None,
    with_token: Annotated[
        bool,
        typer.Option("--with-token", help="Also issue an API token for the owner (shown once)."),
    ] = False,
) -> None:
    settings = load_settings()
    asyncio.run(
        _create_org(
            settings,
            name=name,
            kind=kind,
            owner_email=owner_email,
            owner_name=owner_name,
            with_token=with_token,
        )
    )


async def _create_token(
    settings: Settings, *, email: str, organisation: int | None, name: str
) -> str:
    from domain.organisations import queries, tokens

    async with _database(settings):
        # an e-mail is unique within an organisation only: several may use it
        users = await queries.users_with_email(email, organisation_id=organisation)
        if not users:
            where = "" if organisation is None else f" in organisation {organisation}"
            fail(f"no user with e-mail {email!r}{where}")
        if len(users) > 1:
            listed = ", ".join(str(u.organisation_id) for u in users)
            fail(
                f"{len(users)} users have the e-mail {email!r} (organisations {listed}): "
                "choose one with --organisation ID"
            )
        _, secret = await tokens.issue_token(user=users[0], name=name)
        return secret


@app.command("create-token", help="Issue an API token for a user and print it (shown once).")
def create_token(
    email: Annotated[str, typer.Option(help="The user's e-mail (any case).")],
    organisation: Annotated[
        int | None,
        typer.Option(
            help="The user's organisation (id): needed when several organisations use the e-mail."
        ),
    ] = None,
    name: Annotated[str, typer.Option(help="The token's name, as token lists show it.")] = "cli",
) -> None:
    settings = load_settings()
    print(asyncio.run(_create_token(settings, email=email, organisation=organisation, name=name)))


# --- the demo world --------------------------------------------------------------------------


async def _seed_demo(settings: Settings, progress: cli_progress.Steps | None) -> Any:
    from service import demo

    async with _database(settings):
        return await demo.seed_demo(progress=progress, settings=settings)


@app.command(
    "seed-demo",
    help="Create or complete the demo world (organisations, catalogue, store, warehouse, "
    "orders in every status) and print a token for each demo owner. Safe to run again.",
)
def seed_demo() -> None:
    settings = load_settings()
    with cli_progress.steps("demo world") as progress:
        seeded = asyncio.run(_seed_demo(settings, progress))
    for line in seeded.summary():
        print(line)
    for token in seeded.tokens.all():
        print(token.line())


async def _simulate(
    settings: Settings,
    *,
    url: str | None,
    interval: float,
    steps: int | None,
    seed: int | None,
    deadlines: bool,
    out: cli_progress.Out,
) -> None:
    import httpx

    from service import demo, simulate

    task = asyncio.current_task()
    assert task is not None
    # SIGTERM stops it as Ctrl-C does: cancelled, it cleans up on the way out
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    url = (url or settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/")
    async with httpx.AsyncClient() as http:  # before issuing tokens it could not revoke
        await http.get(f"{url}/healthz")
    async with _database(settings):
        tokens = await demo.issue_tokens(name="simulate")
    await simulate.run(
        url=url,
        tokens=tokens,
        interval=interval,
        steps=steps,
        seed=seed,
        deadlines=deadlines,
        out=out,
    )


@app.command(
    help="Keep demo orders, withdrawals and breaches flowing through a running server's API "
    "(after seed-demo), one line per action, until Ctrl-C or --steps."
)
def simulate(
    url: Annotated[
        str | None,
        typer.Option(help="The server. Default: the PUBLIC_URL setting, else http://HOST:PORT."),
    ] = None,
    interval: Annotated[float, typer.Option(min=0, help="Seconds between actions.")] = 2.0,
    steps: Annotated[
        int | None,
        typer.Option(min=1, help="Stop after this many actions. Default: never."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the random choices, for repeatable runs.")
    ] = None,
    demo_deadlines: Annotated[
        bool,
        typer.Option(
            help="Shorten the demo organisations' service-level deadlines to minutes while "
            "running, so breaches open and clear."
        ),
    ] = True,
) -> None:
    import httpx

    from service.simulate import SimulationError

    settings = load_settings()
    try:
        # Ctrl-C or SIGTERM: it has cleaned up and said how far it got
        with (
            cli_progress.simulation(steps) as out,
            suppress(KeyboardInterrupt, asyncio.CancelledError),
        ):
            asyncio.run(
                _simulate(
                    settings,
                    url=url,
                    interval=interval,
                    steps=steps,
                    seed=seed,
                    deadlines=demo_deadlines,
                    out=out,
                )
            )
    except SimulationError as exc:
        fail(str(exc))
    except httpx.TransportError as exc:
        fail(f"the server does not answer ({exc!r}); is it running?")


# --- the schema, the settings, keys ----------------------------------------------------------


@app.command("export-schema", help="Write the GraphQL schema (SDL).")
def export_schema(
    output: Annotated[str, typer.Option(help="The file to write, or - for stdout.")] = SCHEMA_FILE,
) -> None:
    from schema.build import create_schema

    sdl = create_schema().as_str() + "\n"
    if output == "-":
        sys.stdout.write(sdl)
    else:
        Path(output).write_text(sdl, encoding="utf-8")
        print(f"schema written to {output}")


@app.command(
    "settings",
    help="Print every setting (environment variable) with its default and meaning, as a "
    "Markdown table, or as a JSON schema.",
)
def print_settings(
    as_json_schema: Annotated[
        bool,
        typer.Option("--json-schema", help="Print the settings' JSON schema instead."),
    ] = False,
) -> None:
    if as_json_schema:
        print(json.dumps(json_schema(), indent=2))
        return
    print("| Variable | Default | Meaning |\n| --- | --- | --- |")
    for env, default, doc in describe():
        print(f"| `{env}` | `{default}` | {doc} |" if default else f"| `{env}` | (empty) | {doc} |")


@app.command(
    "error-codes",
    help="Print every error code a client can get (userErrors and top-level), with its "
    "meaning, as Markdown tables.",
)
def print_error_codes() -> None:
    from schema.error_codes import markdown

    print("\n".join(markdown()))


@app.command("generate-key", help="Print a new SECRETS_KEY for sealing stored credentials.")
def generate_key() -> None:
    from domain.secrets import generate_key as new_key

    print(new_key())


# --- entry points ----------------------------------------------------------------------------


def script_invocation(default: str = "python main.py") -> str:
    """How this process's script was run (``.venv/bin/python main.py``), with the
    interpreter's own options, for the usage lines of ``python main.py``."""
    typed = len(sys.orig_argv) - len(sys.argv) + 1
    if typed < 2:
        return default
    return shlex.join(sys.orig_argv[:typed])


def main(argv: Sequence[str] | None = None, *, prog_name: str | None = None) -> None:
    """The ``supplygraph`` console script (its name taken from ``sys.argv[0]``). ``main.py``
    passes how it was run as ``prog_name``; no shell completes ``python main.py``, so that has
    no completion options."""
    command = typer.main.get_command(app)
    if prog_name is not None:
        command.params = [p for p in command.params if p.name not in COMPLETION_OPTIONS]
    command.main(args=argv, prog_name=prog_name)
