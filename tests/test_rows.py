"""``domain.persistence.rows`` builds exactly the instances Tortoise builds, for every model with rows."""

from __future__ import annotations

from typing import Any

from tortoise import Tortoise

from bench.seed import seed
from domain.persistence import rows
from tests.support.server import RunningServer


def _state(instance: Any) -> list[tuple[str, Any, type]]:
    return sorted((k, v, type(v)) for k, v in vars(instance).items())


async def test_row_builder_matches_tortoise_for_every_model(server: RunningServer) -> None:
    await seed(30)  # orders with lines, SKUs, products, stores, methods and transitions
    compared = 0
    for model in Tortoise.apps["models"].values():
        expected = await model.all().order_by(model._meta.pk_attr)
        if not expected:
            continue
        built = await rows.fetch_query(model.all().order_by(model._meta.pk_attr))
        assert [_state(i) for i in built] == [_state(i) for i in expected], model.__name__
        compared += 1
    assert compared >= 8


async def test_a_joined_row_is_read_through_its_prefix(server: RunningServer) -> None:
    from domain.catalogue.models import Sku

    [sku] = await Sku.all().order_by("id").limit(1) or [None]
    if sku is None:
        await seed(1)
        [sku] = await Sku.all().order_by("id").limit(1)
    _, [row] = await Sku._meta.db.execute_query(
        f'SELECT * FROM "{Sku._meta.db_table}" WHERE "id" = {int(sku.pk)}'
    )
    prefixed = {f"s_{k}": v for k, v in dict(row).items()}
    assert _state(rows.builder(Sku).build(prefixed, "s_")) == _state(sku)
