"""500 concurrent payments from cloud-warehouse stock against a stock of 100: how many succeed,
the final stock, and the throughput, beside a baseline of 500 plain wallet payments in the same
run (ratio, not absolute time: machines are noisy).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test make bench-stock

On PostgreSQL it creates and drops its own database next to the one named; without a
PostgreSQL ``DATABASE_URL`` it runs on a temporary SQLite file (one writer: no real concurrency).
Options: ``--attempts 500 --stock 100 --pool 20``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tortoise import Tortoise

from bench.command_line import command_app, exit_code
from bench.database import admin, scratch_database
from domain import secrets
from domain.access import Viewer
from domain.catalogue import commands as catalogue
from domain.db import tortoise_config
from domain.errors import DomainError
from domain.models import Organisation, StockItem, StockMovement, Wallet
from domain.orders.intake import ManualLine, create_manual_order
from domain.organisations import commands as organisations
from domain.organisations.models import OrganisationKind, Role
from domain.payments import commands as payments
from domain.stock import commands as stock
from domain.stock.models import MovementKind
from service.cli import apply_migrations

ADDRESS = {"name": "A", "address1": "1 High St", "city": "London", "country_code": "GB"}


def _viewer(org: Organisation, user_id: int) -> Viewer:
    return Viewer(
        user_id=user_id,
        organisation_id=org.id,
        organisation_kind=org.kind,
        role=Role.OWNER,
        token_id=0,
    )


async def _setup(attempts: int, stock_units: int) -> dict:
    supplier, supplier_user = await organisations.create_organisation(
        name="Bench supplier",
        kind=OrganisationKind.SUPPLIER,
        owner_email="s@bench.test",
        owner_name="S",
    )
    buyer, buyer_user = await organisations.create_organisation(
        name="Bench buyer",
        kind=OrganisationKind.BUYER,
        owner_email="b@bench.test",
        owner_name="B",
    )
    sv, bv = _viewer(supplier, supplier_user.id), _viewer(buyer, buyer_user.id)
    product = await catalogue.create_product(
        viewer=sv,
        title="Tee",
        skus=[
            catalogue.SkuSpec(
                code="TEE", attributes={"size": "M"}, weight_grams=200, unit_price=Decimal("5")
            )
        ],
    )
    sku = (await product.skus.all())[0]  # type: ignore[attr-defined]
    method = await catalogue.create_logistics_method(
        viewer=sv,
        name="Air",
        min_days=3,
        max_days=5,
        rules=[catalogue.FreightRuleSpec("*", 500, Decimal("3"), 500, Decimal("1"))],
    )
    warehouse, _ = await stock.create_cloud_warehouse(viewer=sv, name="Yuncang", address=ADDRESS)
    item = await StockItem.create(
        buyer_id=buyer.id,
        warehouse_id=warehouse.id,
        sku_id=sku.id,
        on_hand=stock_units,
        available=stock_units,
    )
    await StockMovement.create(
        stock_item_id=item.id, kind=MovementKind.RECEIVED, on_hand_delta=stock_units
    )
    wallet = await payments.wallet_for(buyer_id=buyer.id, supplier_id=supplier.id)
    await Wallet.filter(id=wallet.id).update(balance_cents=100_000_000)

    async def orders(n: int) -> list[int]:
        made = []
        for _ in range(n):
            order = await create_manual_order(
                viewer=bv,
                lines=[ManualLine(sku.id, 1)],
                shipping_address=ADDRESS,
                logistics_method_id=method.id,
            )
            made.append(order.id)
        return made

    return {
        "buyer": bv,
        "warehouse": warehouse.id,
        "item": item.id,
        "plain": await orders(attempts),
        "from_stock": await orders(attempts),
    }


async def _pay_all(
    viewer: Viewer, order_ids: list[int], warehouse_id: int | None
) -> tuple[Counter[str], float]:
    async def pay(order_id: int) -> str:
        try:
            await payments.pay_orders(
                viewer=viewer,
                order_ids=[order_id],
                logistics_method_id=None,
                stock_warehouse_id=warehouse_id,
            )
        except DomainError as error:
            return error.code.value
        return "PAID"

    started = time.perf_counter()
    outcomes = await asyncio.gather(*(pay(o) for o in order_ids))
    return Counter(outcomes), time.perf_counter() - started


async def measure(attempts: int, stock_units: int, pool: int) -> bool:
    """Print the figures; whether nothing was oversold and no payment lost."""
    source = os.environ.get("DATABASE_URL", "")
    url, pg_name, folder = scratch_database(source)
    if pg_name:
        await admin(source, f'CREATE DATABASE "{pg_name}"')
    try:
        await apply_migrations(url)
        run_url = f"{url}?minsize=1&maxsize={pool}" if pg_name else url
        secrets.configure(secrets.generate_key())
        await Tortoise.init(config=tortoise_config(run_url))
        try:
            print(
                f"database: {'PostgreSQL' if pg_name else 'SQLite (one writer)'}; "
                f"{attempts} attempts, stock {stock_units}",
                flush=True,
            )
            data = await _setup(attempts, stock_units)
            plain, plain_s = await _pay_all(data["buyer"], data["plain"], None)
            from_stock, stock_s = await _pay_all(
                data["buyer"], data["from_stock"], data["warehouse"]
            )
            item = await StockItem.get(id=data["item"])
            moves = await StockMovement.filter(stock_item_id=item.id)
            ledger = (
                sum(m.on_hand_delta for m in moves),
                sum(m.reserved_delta for m in moves),
            )
        finally:
            await Tortoise.close_connections()
    finally:
        if pg_name:
            await admin(source, f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    plain_rate = attempts / plain_s
    stock_rate = attempts / stock_s
    print(f"{'figure':<44}{'value':>12}")
    rows = [
        ("reservation attempts", attempts),
        ("succeeded (reserved)", from_stock.get("PAID", 0)),
        ("refused INSUFFICIENT_STOCK", from_stock.get("INSUFFICIENT_STOCK", 0)),
        (
            "refused otherwise",
            sum(v for k, v in from_stock.items() if k not in ("PAID", "INSUFFICIENT_STOCK")),
        ),
        ("final on hand", item.on_hand),
        ("final reserved", item.reserved),
        ("final available", item.available),
        ("ledger agrees (on hand, reserved)", str(ledger == (item.on_hand, item.reserved))),
        ("payments from stock per second", f"{stock_rate:.1f}"),
        ("baseline: plain payments per second", f"{plain_rate:.1f}"),
        ("ratio stock / baseline", f"{stock_rate / plain_rate:.2f}"),
    ]
    for name, value in rows:
        print(f"{name:<44}{value!s:>12}")
    oversold = from_stock.get("PAID", 0) != min(attempts, stock_units) or item.available < 0
    if oversold or plain.get("PAID", 0) != attempts:
        print("FAILED: oversold, lost a reservation or a plain payment", file=sys.stderr)
        return False
    return True


app = command_app()


@app.command(
    help="Concurrent payments from cloud-warehouse stock against a smaller stock: how many "
    "succeed, the final stock and the throughput, beside as many plain wallet payments."
)
def reserve(
    attempts: Annotated[
        int, typer.Option(help="concurrent payments from stock, and as many plain ones")
    ] = 500,
    stock_units: Annotated[
        int, typer.Option("--stock", help="units in the cloud warehouse before the run")
    ] = 100,
    pool: Annotated[int, typer.Option(help="PostgreSQL connections")] = 20,
) -> None:
    if not asyncio.run(measure(attempts, stock_units, pool)):
        raise typer.Exit(1)


def main(argv: list[str] | None = None) -> int:
    """The command on ``argv`` (the script's arguments when None): 1 if it oversold or lost a
    payment."""
    return exit_code(app, __file__, argv)


if __name__ == "__main__":
    sys.exit(main())
