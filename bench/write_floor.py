"""The write floor: the physical limit of a payment-shaped transaction from one Python process.

A payment as ``payOrders`` makes it, written out by hand with asyncpg on the same PostgreSQL
database, with nothing else: lock the wallet, debit it, write the ledger entry, compare-and-set
the order (AWAITING_PAYMENT → AWAITING_SHIPPING), write its timeline entry, the event and its
audience (buyer and supplier), commit. Every transaction debits the same wallet row, as
``hot_paths.pay``'s do (one buyer paying many orders at once, the contended case). 32 tasks in
one process pinned to the servers' core, one connection each, prepared statements, one
statement per round trip; the figure is committed transactions per second (median of the
repetitions, after a warm-up), and ``hot_paths`` reports each write path against it.

Its tables live in a schema of their own (``write_floor``) in the run's database, made and
dropped by the run; they have the columns, keys and indexes the service's tables of the same
role have. On SQLite there is nothing to compare with: the row says it was skipped.

    python bench/write_floor.py postgres://... [--seconds 5] [--repetitions 3] [--clients 32]
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.command_line import command_app, exit_code
from bench.common import PYTHON, ROOT, Row, pinned
from bench.context import BenchContext

SCRIPT = Path(__file__).resolve()
NAME = "write_floor"
REQUIRES: tuple[str, ...] = ()
USES_DATABASE = True
WARM_UP = 1.0

SCHEMA = """
DROP SCHEMA IF EXISTS write_floor CASCADE;
CREATE SCHEMA write_floor;
CREATE TABLE write_floor.wallet (
    id BIGSERIAL PRIMARY KEY, buyer_id BIGINT NOT NULL, supplier_id BIGINT NOT NULL,
    currency VARCHAR(3) NOT NULL, balance_cents BIGINT NOT NULL,
    UNIQUE (buyer_id, supplier_id));
CREATE TABLE write_floor.supply_order (
    id BIGSERIAL PRIMARY KEY, number VARCHAR(32) NOT NULL UNIQUE, buyer_id BIGINT NOT NULL,
    supplier_id BIGINT NOT NULL, status VARCHAR(32) NOT NULL, paid_amount NUMERIC(14, 2),
    paid_at TIMESTAMPTZ, updated_at TIMESTAMPTZ NOT NULL);
CREATE INDEX ON write_floor.supply_order (buyer_id, status, id);
CREATE INDEX ON write_floor.supply_order (supplier_id, status, id);
CREATE TABLE write_floor.wallet_entry (
    id BIGSERIAL PRIMARY KEY, wallet_id BIGINT NOT NULL REFERENCES write_floor.wallet (id),
    kind VARCHAR(16) NOT NULL, amount NUMERIC(14, 2) NOT NULL,
    order_id BIGINT REFERENCES write_floor.supply_order (id), note VARCHAR(200) NOT NULL,
    created_at TIMESTAMPTZ NOT NULL);
CREATE INDEX ON write_floor.wallet_entry (wallet_id, id);
CREATE INDEX ON write_floor.wallet_entry (order_id);
CREATE TABLE write_floor.order_transition (
    id BIGSERIAL PRIMARY KEY, order_id BIGINT NOT NULL REFERENCES write_floor.supply_order (id),
    from_status VARCHAR(32) NOT NULL, to_status VARCHAR(32) NOT NULL,
    reason VARCHAR(500) NOT NULL, created_at TIMESTAMPTZ NOT NULL);
CREATE INDEX ON write_floor.order_transition (order_id, id);
CREATE TABLE write_floor.event (
    id BIGSERIAL PRIMARY KEY, seq BIGINT UNIQUE, type VARCHAR(64) NOT NULL,
    subject_type VARCHAR(64) NOT NULL, subject_id VARCHAR(64) NOT NULL, payload JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL, published_at TIMESTAMPTZ);
CREATE INDEX ON write_floor.event (published_at);
CREATE TABLE write_floor.event_audience (
    id BIGSERIAL PRIMARY KEY, event_id BIGINT NOT NULL REFERENCES write_floor.event (id)
    ON DELETE CASCADE, organisation_id BIGINT NOT NULL, UNIQUE (organisation_id, event_id));
CREATE INDEX ON write_floor.event_audience (event_id);
"""

LOCK = "SELECT balance_cents FROM write_floor.wallet WHERE id = $1 FOR UPDATE"
DEBIT = "UPDATE write_floor.wallet SET balance_cents = balance_cents - $2 WHERE id = $1"
ENTRY = (
    "INSERT INTO write_floor.wallet_entry (wallet_id, kind, amount, order_id, note, created_at) "
    "VALUES ($1, 'PAYMENT', $2, $3, $4, now())"
)
PAY = (
    "UPDATE write_floor.supply_order SET status = 'AWAITING_SHIPPING', paid_amount = $2, "
    "paid_at = now(), updated_at = now() WHERE id = $1 AND status = 'AWAITING_PAYMENT'"
)
TRANSITION = (
    "INSERT INTO write_floor.order_transition (order_id, from_status, to_status, reason, "
    "created_at) VALUES ($1, 'AWAITING_PAYMENT', 'AWAITING_SHIPPING', $2, now())"
)
EVENT = (
    "INSERT INTO write_floor.event (type, subject_type, subject_id, payload, created_at) "
    "VALUES ('ORDER_STATUS_CHANGED', 'Order', $1, $2, now()) RETURNING id"
)
AUDIENCE = (
    "INSERT INTO write_floor.event_audience (event_id, organisation_id) VALUES ($1, $2), ($1, $3)"
)
BUYER, SUPPLIER = 1, 2


async def _prepare(connection: object, orders: int) -> None:
    await connection.execute(SCHEMA)  # type: ignore[attr-defined]
    await connection.execute(  # type: ignore[attr-defined]
        "INSERT INTO write_floor.wallet (buyer_id, supplier_id, currency, balance_cents) "
        f"VALUES ({BUYER}, {SUPPLIER}, 'USD', {orders * 800})"
    )
    await connection.execute(  # type: ignore[attr-defined]
        "INSERT INTO write_floor.supply_order (number, buyer_id, supplier_id, status, updated_at) "
        f"SELECT 'WF' || n, {BUYER}, {SUPPLIER}, 'AWAITING_PAYMENT', now() "
        f"FROM generate_series(1, {orders}) AS n"
    )


async def _pay(connection: object, order_id: int) -> None:
    import asyncpg  # the floor's only dependency beyond the standard library

    assert isinstance(connection, asyncpg.Connection)
    async with connection.transaction():
        await connection.fetchval(LOCK, 1)
        await connection.execute(DEBIT, 1, 800)
        await connection.execute(ENTRY, 1, -8, order_id, f"order WF{order_id}")
        status = await connection.execute(PAY, order_id, 8)
        if status != "UPDATE 1":
            raise RuntimeError(f"order {order_id} was not awaiting payment")
        await connection.execute(TRANSITION, order_id, "paid 8.00 USD")
        payload = json.dumps({"orderId": order_id, "from": "AWAITING_PAYMENT"})
        event_id = await connection.fetchval(EVENT, str(order_id), payload)
        await connection.execute(AUDIENCE, event_id, BUYER, SUPPLIER)


async def floor(database_url: str, *, seconds: float, repetitions: int, clients: int) -> dict:
    """Transactions per second of each repetition, and the checks after."""
    import asyncpg

    dsn = database_url.replace("postgres://", "postgresql://", 1)
    setup = await asyncpg.connect(dsn)
    # enough orders for the fastest machine: one each, never reused (a paid order cannot be
    # paid again)
    orders = int(20_000 * (seconds * repetitions + WARM_UP + 1))
    await _prepare(setup, orders)
    connections = [await asyncpg.connect(dsn) for _ in range(clients)]
    next_order = iter(range(1, orders + 1))
    committed = 0
    stop_at = 0.0

    async def worker(connection: object) -> None:
        nonlocal committed
        while time.perf_counter() < stop_at:
            await _pay(connection, next(next_order))
            committed += 1

    rates: list[float] = []
    try:
        for window in [WARM_UP] + [seconds] * repetitions:
            committed, started = 0, time.perf_counter()
            stop_at = started + window
            await asyncio.gather(*(worker(c) for c in connections))
            if window is not WARM_UP:
                rates.append(committed / (time.perf_counter() - started))
        paid = await setup.fetchval(
            "SELECT count(*) FROM write_floor.supply_order WHERE status = 'AWAITING_SHIPPING'"
        )
        entries = await setup.fetchval("SELECT count(*) FROM write_floor.wallet_entry")
        balance = await setup.fetchval("SELECT balance_cents FROM write_floor.wallet")
        checked = paid == entries and balance == orders * 800 - paid * 800
    finally:
        for connection in connections:
            await connection.close()
        await setup.execute("DROP SCHEMA IF EXISTS write_floor CASCADE")
        await setup.close()
    return {"rates": rates, "paid": paid, "checked": checked}


async def run(ctx: BenchContext) -> list[Row]:
    if not ctx.database_url.startswith("postgres"):
        return [Row(NAME, float("nan"), "skipped: needs PostgreSQL (DATABASE_URL)")]
    repetitions = ctx.load.repetitions
    command = [
        PYTHON,
        str(SCRIPT),
        ctx.database_url,
        f"--seconds={ctx.load.duration}",
        f"--repetitions={repetitions}",
        f"--clients={ctx.load.clients}",
    ]
    done = await asyncio.to_thread(
        subprocess.run, pinned(command), cwd=ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"write floor failed: {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    rate = statistics.median(result["rates"])
    ctx.write_floor = rate
    return [
        Row(NAME, rate, "tx/s"),
        Row(
            f"{NAME}.checked",
            1.0 if result["checked"] else 0.0,
            "ok" if result["checked"] else "CHECK FAILED",
            target="ledger equals paid orders",
            met=bool(result["checked"]),
        ),
    ]


app = command_app()


@app.command(help=(__doc__ or "").splitlines()[0])
def measure_floor(
    database_url: Annotated[
        str,
        typer.Argument(
            metavar="DATABASE_URL",
            help="the PostgreSQL database to make the write_floor schema in",
        ),
    ],
    seconds: Annotated[float, typer.Option(help="seconds per measured repetition")] = 5.0,
    repetitions: Annotated[int, typer.Option(help="measured repetitions, after a warm-up")] = 3,
    clients: Annotated[int, typer.Option(help="tasks, one connection each")] = 32,
) -> None:
    """Prints one JSON line (rates, paid, checked): what ``run`` reads back."""
    result = asyncio.run(
        floor(database_url, seconds=seconds, repetitions=repetitions, clients=clients)
    )
    print(json.dumps(result))


def main(argv: list[str] | None = None) -> int:
    """The command on ``argv`` (the script's arguments when None); its exit code."""
    return exit_code(app, __file__, argv)


if __name__ == "__main__":
    sys.exit(main())
