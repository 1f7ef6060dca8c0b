"""``node(id:)`` and ``nodes(ids:)``: any object with an identity, fetched again by its id.

Every node type is listed once here with its model; who may see which rows is
``domain.visibility``'s rule, the same one the type's list queries use. An object the caller may
not see gets the answer an unknown id gets: null.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import strawberry
from strawberry import Info
from tortoise.models import Model

from domain import visibility
from domain.access import Viewer
from domain.after_sales import models as am
from domain.catalogue import models as cm
from domain.distribution import models as dm
from domain.errors import DomainError, ErrorCode
from domain.events import models as em
from domain.events import queries as event_queries
from domain.orders import models as om
from domain.organisations import models as org
from domain.payments import models as wm
from domain.persistence.outbox import published
from domain.sla import models as slm
from domain.stock import models as sm
from domain.stores import models as stm
from domain.validation import is_key
from resolvers.permissions import EITHER, requires, viewer_of
from schema import global_ids
from schema.event_ids import EVENT_PREFIX, parse_event_gid
from schema.types import catalogue, distribution, events, orders, organisations, sla, stock, stores
from schema.types.node import Node

MAX_NODES = 100

NODE_TYPES: dict[str, tuple[type[Model], Callable[..., Node]]] = {
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
    "Event": (em.Event, events.Event.from_model),  # with the caller's organisation: ``_events``
    "SlaBreach": (slm.SlaBreach, sla.SlaBreach.from_model),
}


def _parse(raw: str, viewer: Viewer, *, field: str) -> tuple[str, int]:
    if isinstance(raw, str) and raw.startswith(EVENT_PREFIX):
        # an event's id is its organisation's own (``schema.event_ids``): one that names no
        # event of the caller's reads as an unknown id (0: no row)
        return "Event", parse_event_gid(raw, viewer.organisation_id, field=field) or 0
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
    viewer = viewer_of(info)
    wanted = [_parse(raw, viewer, field=f"{field}.{i}") for i, raw in enumerate(raws)]
    keys_by_type: dict[str, list[int]] = defaultdict(list)
    for type_name, key in wanted:
        if is_key(key):  # a key no row can have finds nothing (and is never sent to SQL)
            keys_by_type[type_name].append(key)
    found: dict[tuple[str, int], Node] = {}
    for type_name, keys in keys_by_type.items():
        if type_name == "Event":
            found.update(((type_name, seq), e) for seq, e in (await _events(viewer, keys)).items())
            continue
        model, to_node = NODE_TYPES[type_name]
        for key, row in (await visibility.visible(model, viewer, keys)).items():
            found[(type_name, key)] = to_node(row)
    return [found.get(w) for w in wanted]


async def _events(viewer: Viewer, seqs: list[int]) -> dict[int, Node]:
    """Events by ``seq``, as ``events`` shows them to ``viewer`` (its organisation's ids; an
    API token's events to those who see the token)."""
    rows = await visibility.visible(em.Event, viewer, seqs)
    shown: dict[int, Node] = {}
    for seq, row in rows.items():
        if event_queries.shown_to(viewer, published(row, ())):
            shown[seq] = events.Event.from_model(row, viewer.organisation_id)
    return shown


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
