"""``node(id:)`` and ``nodes(ids:)``: any object with an identity, fetched again by its id.

Every node type is listed once here with its model; who may see which rows is
``domain.visibility``'s rule, the same one the type's list queries use. An object the caller may
not see gets the answer an unknown id gets: null.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import strawberry
from strawberry import Info
from tortoise.models import Model

from domain import visibility
from domain.after_sales import models as am
from domain.catalogue import models as cm
from domain.distribution import models as dm
from domain.errors import DomainError, ErrorCode
from domain.events import models as em
from domain.orders import models as om
from domain.organisations import models as org
from domain.payments import models as wm
from domain.sla import models as slm
from domain.stock import models as sm
from domain.stores import models as stm
from domain.validation import is_key
from resolvers.permissions import EITHER, requires, viewer_of
from schema import global_ids
from schema.types import catalogue, distribution, events, orders, organisations, sla, stock, stores
from schema.types.node import Node

MAX_NODES = 100

NODE_TYPES: dict[str, tuple[type[Model], Callable[[Any], Node]]] = {
    "Organisation": (org.Organisation, organisations.Organisation.from_model),
    "User": (org.User, organisations.User.from_model),
    "ApiToken": (org.ApiToken, organisations.ApiToken.from_model),
    "Product": (cm.Product, catalogue.Product.from_model),
    "Sku": (cm.Sku, catalogue.Sku.from_model),
    "LogisticsMethod": (cm.LogisticsMethod, catalogue.LogisticsMethod.from_model),
    "Store": (stm.Store, stores.Store.from_model),
    "StoreProduct": (stm.StoreProduct, stores.StoreProduct.from_model),
    "StoreVariant": (stm.StoreVariant, stores.StoreVariant.from_model),
    "ProductLink": (stm.ProductLink, stores.ProductLink.from_model),
    "Quote": (om.Quote, orders.Quote.from_model),
    "Order": (om.Order, orders.Order.from_model),
    "OrderLine": (om.OrderLine, orders.OrderLine.from_model),
    "Depute": (om.Depute, orders.Depute.from_model),
    "Wallet": (wm.Wallet, orders.Wallet.from_model),
    "WalletEntry": (wm.WalletEntry, orders.WalletEntry.from_model),
    "Partnership": (dm.Partnership, distribution.Partnership.from_model),
    "DistributionWarehouse": (
        dm.DistributionWarehouse,
        distribution.DistributionWarehouse.from_model,
    ),
    "ThirdPartyWarehouse": (dm.ThirdPartyWarehouse, distribution.ThirdPartyWarehouse.from_model),
    "DistributionSettings": (
        dm.DistributionSettings,
        distribution.DistributionSettings.from_model,
    ),
    "AfterSalesOrder": (am.AfterSalesOrder, distribution.AfterSalesOrder.from_model),
    "Withdrawal": (dm.Withdrawal, distribution.Withdrawal.from_model),
    "WarehouseAttempt": (dm.WarehouseAttempt, distribution.WarehouseAttempt.from_model),
    "CloudWarehouse": (sm.CloudWarehouse, stock.CloudWarehouse.from_model),
    "StockItem": (sm.StockItem, stock.StockItem.from_model),
    "StockMovement": (sm.StockMovement, stock.StockMovement.from_model),
    "Event": (em.Event, events.Event.from_model),
    "SlaBreach": (slm.SlaBreach, sla.SlaBreach.from_model),
}


def _parse(raw: str, *, field: str) -> tuple[str, int]:
    parts = global_ids.split(raw)
    if parts is None or parts[0] not in NODE_TYPES:
        raise DomainError(
            ErrorCode.BAD_USER_INPUT,
            f"Not the global id of an object (gid://supplygraph/<Type>/<key>): {raw[:80]!r}.",
            field=field,
        )
    return parts


async def resolve_nodes(info: Info, raws: list[str], *, field: str) -> list[Node | None]:
    """The objects named by ``raws``, in order; null where the caller may not see one. One query
    per type asked for."""
    wanted = [_parse(raw, field=f"{field}.{i}") for i, raw in enumerate(raws)]
    keys_by_type: dict[str, list[int]] = defaultdict(list)
    for type_name, key in wanted:
        if is_key(key):  # a key no row can have finds nothing (and is never sent to SQL)
            keys_by_type[type_name].append(key)
    viewer = viewer_of(info)
    found: dict[tuple[str, int], Node] = {}
    for type_name, keys in keys_by_type.items():
        model, to_node = NODE_TYPES[type_name]
        for key, row in (await visibility.visible(model, viewer, keys)).items():
            found[(type_name, key)] = to_node(row)
    return [found.get(w) for w in wanted]


@strawberry.type
class NodeQueries:
    @strawberry.field(
        extensions=[requires(EITHER)],
        description="Any object by its global id; null if there is none the caller may see.",
    )
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        return (await resolve_nodes(info, [id], field="id"))[0]

    @strawberry.field(
        extensions=[requires(EITHER)],
        description=f"Objects by their global ids, in the order asked (at most {MAX_NODES}); "
        "null for each the caller may not see.",
    )
    async def nodes(self, info: Info, ids: list[strawberry.ID]) -> list[Node | None]:
        if len(ids) > MAX_NODES:
            raise DomainError(
                ErrorCode.BAD_USER_INPUT, f"At most {MAX_NODES} ids at once.", field="ids"
            )
        return await resolve_nodes(info, ids, field="ids")
