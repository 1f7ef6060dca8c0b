"""``make bench``: supplygraph's throughput, latency and SQL cost beside baselines of the same run.

    .venv/bin/python bench/runner.py [--quick] [--only NAME[,NAME]]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test make bench

Benchmarks (``--only`` picks; what a benchmark needs as its baseline runs too):

- ``plain_starlette``: a bare Starlette JSON endpoint, the floor reference (req/s, p50, p99).
- ``sql_per_request``: SQL statements of the orders page at ``first: 10`` and ``first: 100``.
- ``orders_page``: the orders page (50 orders with lines, SKUs, products, store, method, latest
  transition) as a buyer with 100,000 orders, beside a default Strawberry schema of the same
  shape on in-memory objects.
- ``webhook_ingest``: signed store-order webhooks (5 % redeliveries), beside ``plain_starlette``.
- ``live_subscribers``: order status changes pushed to 1,000 and 5,000 graphql-transport-ws
  subscribers (latency, lost, server CPU per delivery, RSS), beside ``bench/ws_floor.py``, a
  hand-written WebSocket endpoint sending one pre-serialised frame to every socket.
- ``live_tenants``: 10,000 subscribers across 2,000 organisations (``--quick``: 2,000 across
  400), events recorded into the outbox, stepped rates until p99 > 1 s or loss, beside the floor
  with the same routing; two instances on PostgreSQL + Redis (``bench/live_tenants.py``).
- ``live_mix``: a dashboard's mix of 18 subscriptions through the whole distribution flow
  (requests and background work), commit-to-client p50/p99 by event source, beside one
  subscription through the same flow (``bench/live_mix.py``).
- ``write_floor``: a payment-shaped transaction written out with asyncpg (lock the wallet,
  debit, ledger entry, compare-and-set the order, timeline entry, event and audience, commit),
  32 tasks in one process on the servers' core: the physical limit every write path is
  reported against (PostgreSQL only; ``bench/write_floor.py``).
- ``hot_paths``: ``payOrders`` (wallet; wallet + cloud-stock reservation) and ``withdrawOrder``
  on distinct orders, beside an ``order(id:)`` read; the withdraw cascade to WITHDRAWN against
  the warehouse simulator; every payment and withdraw checked in the database afterwards.
- ``scale_out``: two instances on one PostgreSQL and Redis: orders-page throughput of A alone
  and of A + B (clients split), and ``orderStatusChanged`` latency on A for changes made on B
  beside changes made on A (needs PostgreSQL and REDIS_URL, otherwise skipped).
- ``repeated_reads``: the orders page requested again and again (answered by the response
  cache), beside ``plain_starlette``.
- ``growth``: the orders page's p50 (first, deep and filtered pages) with 1,000,000 orders
  (``--quick``: 100,000) beside 10,000, on PostgreSQL databases of its own (else skipped).
- ``idle_cpu``: the served instance's CPU per second of an idle window after traffic stopped
  (target at most 1 ms/s; ``bench/idle_cpu.py``).

The server is started the way ``make run`` starts it (``python main.py migrate``, then ``python
main.py serve`` with HOST, PORT, LOG_LEVEL=WARNING) on a database made for the run: a
PostgreSQL database ``bench_<random>`` next to DATABASE_URL's when that names PostgreSQL (dropped
afterwards), else a temporary SQLite file; REDIS_URL passes through. With ``taskset`` and two
cores the servers run on core 0 and this process (seeding, load generator) on core 1 (the
database server itself is not pinned). On PostgreSQL the seeded database is vacuumed and
analysed, and between benchmarks ``CHECKPOINT`` and ``ANALYZE`` run (``bench.database.settle``:
one benchmark's writes weigh on the next one's figures otherwise). Load: 32 keep-alive
clients, a 1 s warm-up, then 3 repetitions of 5 s (``--quick``: 1 s) without a pause; the table
shows the median of the repetitions' req/s, p50 and p99 (see ``bench.common.measure`` for how
a window is counted). ``make bench BENCH_ARGS=--quick`` passes options through make.

Writes ``bench/results/latest.json`` (one object per table row: name, value, unit, baseline,
ratio = value / baseline, target, met), ``bench/results/latest.meta.json`` (the run: when, quick
or full, the command, database and Redis with their versions, commit, machine; what
``bench/readme_table.py`` puts under the README's table) and ``bench/results/latencies.json``
(the latency samples and the same meta, for ``make bench-plot``); the servers' logs go to the
same folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Annotated, Literal

import typer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import (
    growth,
    hot_paths,
    idle_cpu,
    live_mix,
    live_subscribers,
    live_tenants,
    orders_page,
    plain_starlette,
    repeated_reads,
    scale_out,
    sql_per_request,
    webhook_ingest,
    write_floor,
)
from bench.command_line import command_app, exit_code, run_async
from bench.common import ROOT, LoadOptions, Row, pin_load_generator, progress
from bench.context import BenchContext
from bench.database import admin, asyncpg_url, is_postgres, migrate, scratch_database, settle

# in the order they run: baselines before what is compared with them
BENCHMARKS: dict[str, ModuleType] = {
    m.NAME: m
    for m in (
        plain_starlette,
        sql_per_request,
        orders_page,
        write_floor,
        webhook_ingest,
        live_subscribers,
        live_mix,
        live_tenants,
        hot_paths,
        repeated_reads,
        scale_out,
        growth,
        idle_cpu,  # last: idle after every other benchmark's traffic
    )
}
FULL_ORDERS, QUICK_ORDERS, FEW_ORDERS = 100_000, 5_000, 500
MIN_ORDERS = 110  # a full page of 100 after the two manual orders
RESULTS = ROOT / "bench" / "results"


@dataclass(frozen=True)
class Options:
    """A run as its command line asks for it (``--help``)."""

    quick: bool
    selected: list[str]  # the benchmarks asked for and what they need, in their running order
    orders: int | None
    duration: float | None
    repetitions: int
    clients: int
    client: str
    results_dir: Path


def _selected(only: list[str] | None) -> list[str]:
    """``--only`` (repeated, or comma-separated) with what those benchmarks need; every
    benchmark when not given."""
    names = [n.strip() for item in only or [] for n in item.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise typer.BadParameter(
            f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}",
            param_hint="'--only'",
        )
    return _with_requirements(names or list(BENCHMARKS))


def _with_requirements(names: list[str]) -> list[str]:
    wanted = set(names)
    for name in names:
        wanted.update(BENCHMARKS[name].REQUIRES)
    return [n for n in BENCHMARKS if n in wanted]


# --------------------------------------------------------------------------- the database


async def _seed(ctx: BenchContext, orders: int) -> None:
    from tortoise import Tortoise

    from bench.seed import seed
    from domain import secrets
    from domain.db import tortoise_config

    secrets.configure(ctx.secrets_key)  # the key the server gets as SECRETS_KEY
    await Tortoise.init(config=tortoise_config(ctx.database_url))
    try:
        ctx.seeded = await seed(orders)
        if ctx.database_url.startswith("postgres"):
            # a bulk load is vacuumed and analysed before it serves; left to autovacuum, that
            # runs during the first benchmarks, on the database's CPU, behind their figures
            started = time.perf_counter()
            await Tortoise.get_connection("default").execute_script("VACUUM ANALYZE")
            progress(f"VACUUM ANALYZE after seeding: {time.perf_counter() - started:.1f} s")
    finally:
        await Tortoise.close_connections()


# --------------------------------------------------------------------------- output


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def print_table(rows: list[Row]) -> None:
    header = ("name", "value", "unit", "baseline", "ratio", "target", "met")
    cells = [
        (
            r.name,
            _fmt(r.value),
            r.unit,
            _fmt(r.baseline),
            _fmt(r.ratio),
            r.target or "-",
            _fmt(r.met),
        )
        for r in rows
    ]
    widths = [max(len(str(c[i])) for c in [header, *cells]) for i in range(len(header))]
    right = {1, 3, 4}

    def line(values: tuple[str, ...]) -> str:
        return "  ".join(
            v.rjust(w) if i in right else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    print(line(header))
    print(line(tuple("-" * w for w in widths)))
    for c in cells:
        print(line(c))


def write_results(ctx: BenchContext, rows: list[Row], meta: dict[str, object]) -> None:
    ctx.results_dir.mkdir(parents=True, exist_ok=True)
    (ctx.results_dir / "latest.json").write_text(
        json.dumps([r.as_json() for r in rows], indent=2) + "\n"
    )
    (ctx.results_dir / "latest.meta.json").write_text(
        json.dumps(meta, indent=2, ensure_ascii=False) + "\n"
    )
    (ctx.results_dir / "latencies.json").write_text(
        json.dumps({"meta": meta, "series": ctx.series}) + "\n"
    )


# --------------------------------------------------------------------------- the run's meta


def command_line(argv: list[str]) -> str:
    """The run as ``make bench`` takes it, with the services it was given (their addresses
    elided: they are this machine's)."""
    given = [name for name in ("DATABASE_URL", "REDIS_URL") if os.environ.get(name)]
    services = " ".join(f"{name}=…" for name in given)
    make = f'make bench BENCH_ARGS="{shlex.join(argv)}"' if argv else "make bench"
    return f"{services} {make}".strip()


async def engine_versions(database_url: str) -> dict[str, str]:
    """The versions of the database and Redis servers the run used (what answers; left out
    when a server does not answer: the figures still stand, only the note is shorter)."""
    found: dict[str, str] = {}
    if not is_postgres(database_url):
        import sqlite3

        found["sqlite"] = sqlite3.sqlite_version
    else:
        import asyncpg

        # the versions are the run's description: one that cannot be read is left out
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            conn = await asyncpg.connect(asyncpg_url(database_url))
            try:
                found["postgresql"] = str(await conn.fetchval("SHOW server_version")).split()[0]
            finally:
                await conn.close()
    if redis_url := os.environ.get("REDIS_URL"):
        from redis.asyncio import Redis
        from redis.exceptions import RedisError

        client = Redis.from_url(redis_url)
        try:
            with contextlib.suppress(OSError, RedisError):
                found["redis"] = str((await client.info("server"))["redis_version"])
        finally:
            await client.aclose()
    return found


def commit() -> str:
    """The checkout's commit, ``+changes`` when its files differ from it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD")
    if not head:
        return "unknown"
    return f"{head}+changes" if git("status", "--porcelain", "--untracked-files=no") else head


# --------------------------------------------------------------------------- main


async def run(options: Options, argv: list[str]) -> int:
    """The run ``argv`` asked for (recorded in the meta as the command)."""
    started = time.perf_counter()
    load = LoadOptions(
        clients=options.clients,
        duration=options.duration or (1.0 if options.quick else 5.0),
        repetitions=options.repetitions,
        warmup=min(1.0, options.duration or 1.0),
        client=options.client,
    )
    ctx = BenchContext(quick=options.quick, load=load, results_dir=options.results_dir)
    pinning = pin_load_generator()
    source = os.environ.get("DATABASE_URL", "")
    uses_db = any(BENCHMARKS[n].USES_DATABASE for n in options.selected)
    orders = options.orders or (
        (QUICK_ORDERS if options.quick else FULL_ORDERS)
        if "orders_page" in options.selected
        else FEW_ORDERS
    )
    pg_name: str | None = None
    folder: Path | None = None
    rows: list[Row] = []
    meta: dict[str, object] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": options.quick,
        "clients": load.clients,
        "duration": load.duration,
        "repetitions": load.repetitions,
        "client": load.client,
        "pinning": pinning,
        "redis": bool(os.environ.get("REDIS_URL")),
        "command": command_line(argv),
        "benchmarks": options.selected,
        "commit": commit(),
        "machine": f"{os.cpu_count()} cores, {platform.system()}, Python "
        f"{platform.python_version()}",
        "versions": await engine_versions(source),
    }
    progress(f"benchmarks: {', '.join(options.selected)}; {pinning}")
    try:
        if uses_db:
            ctx.database_url, pg_name, folder = scratch_database(source)
            meta["database"] = "PostgreSQL" if pg_name else "SQLite"
            if pg_name:
                await admin(source, f'CREATE DATABASE "{pg_name}"')
            progress(f"database: {meta['database']} ({ctx.database_url}); migrating")
            migrate(ctx.database_url)
            from domain.secrets import generate_key

            ctx.secrets_key = generate_key()
            progress(f"seeding {orders:,} orders")
            await _seed(ctx, orders)
            assert ctx.seeded is not None
            progress(f"seeded in {ctx.seeded.seconds:.1f} s")
        for i, name in enumerate(options.selected):
            if pg_name and i:
                progress(f"between benchmarks: {await settle(ctx.database_url)}")
            progress(f"{name}:")
            rows += await BENCHMARKS[name].run(ctx)
    finally:
        ctx.stop_servers()
        if pg_name:
            await admin(source, f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    meta["seconds"] = round(time.perf_counter() - started, 1)
    write_results(ctx, rows, meta)
    print()
    print_table(rows)
    print(
        f"\n{meta.get('database', 'no database')}; {load.clients} clients, "
        f"{load.repetitions} x {load.duration:g} s, median shown; took {meta['seconds']} s; "
        f"results in {ctx.results_dir / 'latest.json'}\n{meta['command']} at {meta['commit']}"
    )
    return 0


app = command_app()


@app.command(help=(__doc__ or "").splitlines()[0])
def run_benchmarks(
    ctx: typer.Context,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="a shorter run: 1 s repetitions, 5,000 orders, smaller populations and windows",
        ),
    ] = False,
    only: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME",
            help="benchmarks to run, repeated or comma-separated (with the ones they compare "
            f"with; default all): {', '.join(BENCHMARKS)}",
            show_default=False,
        ),
    ] = None,
    orders: Annotated[
        int | None,
        typer.Option(
            min=MIN_ORDERS,
            help=f"orders of the buyer (default {FULL_ORDERS:,}, --quick {QUICK_ORDERS:,}, when "
            f"orders_page runs; else {FEW_ORDERS:,})",
        ),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(help="seconds per repetition (default 5, --quick 1)"),
    ] = None,
    repetitions: Annotated[
        int, typer.Option(help="measured repetitions of each figure (the median is shown)")
    ] = 3,
    clients: Annotated[int, typer.Option(help="keep-alive connections of the load")] = 32,
    client: Annotated[
        Literal["raw", "httpx"],
        typer.Option(help="the load's HTTP client: hand-written HTTP/1.1, or httpx"),
    ] = "raw",
    results_dir: Annotated[
        Path,
        typer.Option(
            help="folder for latest.json, latest.meta.json, latencies.json and the servers' logs",
            show_default="bench/results",
        ),
    ] = RESULTS,
) -> None:
    options = Options(
        quick=quick,
        selected=_selected(only),
        orders=orders,
        duration=duration,
        repetitions=repetitions,
        clients=clients,
        client=client,
        results_dir=results_dir,
    )
    raise typer.Exit(run_async(run(options, ctx.obj)))


def main(argv: list[str] | None = None) -> int:
    """The command on ``argv`` (the script's arguments when None); its exit code."""
    argv = sys.argv[1:] if argv is None else argv
    return exit_code(app, __file__, argv, obj=argv)


if __name__ == "__main__":
    sys.exit(main())
