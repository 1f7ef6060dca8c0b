"""Data one organisation publishes to organisations outside the audience of the events that
change it.

Most data is seen only by the organisations an event names (its audience: an order's buyer and
supplier, a partnership's two sides, a wallet's two sides). Some is seen by others as well: a
supplier's catalogue by every buyer browsing it, a buyer's store by the suppliers of its orders,
an organisation's name by every counterpart. Naming all of those in each event's audience would
make a catalogue edit an event to every buyer; instead such an event *changes* one kind of
shared data, and whatever keeps copies of it (the response cache) drops every copy that read
that kind, whoever's it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from domain.events import EventType


class SharedData(StrEnum):
    """Kinds of data visible beyond the audience of the events that change them."""

    CATALOGUE = "CATALOGUE"
    """Products, SKUs and price tiers: every buyer browses them; order lines, stock items and
    freight quotes show or price them."""
    LOGISTICS = "LOGISTICS"
    """Logistics methods and their freight rules: every buyer lists them; orders show them and
    freight quotes price with them."""
    CLOUD_WAREHOUSES = "CLOUD_WAREHOUSES"
    """Suppliers' cloud warehouses: every buyer lists them."""
    STORES = "STORES"
    """A buyer's connected stores: the suppliers of its orders see them on the orders."""
    ORGANISATION_NAMES = "ORGANISATION_NAMES"
    """Organisations' names: counterparts see them on orders, partnerships and returns, and
    filter by them."""


CHANGED_BY: Mapping[EventType, SharedData] = MappingProxyType(
    {
        EventType.PRODUCT_UPDATED: SharedData.CATALOGUE,
        EventType.LOGISTICS_METHOD_UPDATED: SharedData.LOGISTICS,
        EventType.CLOUD_WAREHOUSE_UPDATED: SharedData.CLOUD_WAREHOUSES,
        EventType.STORE_UPDATED: SharedData.STORES,
        EventType.ORGANISATION_UPDATED: SharedData.ORGANISATION_NAMES,
    }
)
"""The shared data an event of each type changes (beyond what its audience sees). Every other
type changes only what its audience sees."""

_BY_VALUE: Mapping[str, SharedData] = MappingProxyType(
    {event_type.value: shared for event_type, shared in CHANGED_BY.items()}
)


def changed_by(event_type: str) -> SharedData | None:
    """The shared data an event of ``event_type`` changes, if any."""
    return _BY_VALUE.get(event_type)
