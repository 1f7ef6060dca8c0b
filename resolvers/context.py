"""What every resolver receives as ``info.context``.

Resolvers import no ``integrations`` module: what they need of the outside world (the event
hub, calls to stores and warehouses) is typed here by Protocols and filled in by ``service/``
with the integrations' implementations (``service/ports.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field
from typing import Any, Protocol

from domain.access import Viewer
from domain.distribution.models import ThirdPartyWarehouse
from domain.events import PublishedEvent
from domain.stores.models import Store
from resolvers.loaders import Loaders


class EventSource(Protocol):
    """The process's event hub (``integrations/bus/hub.py``)."""

    def stream(
        self,
        *,
        organisation_id: int,
        token_id: int | None = None,
        after_seq: int | None = None,
        types: Collection[str] | None = None,
    ) -> AsyncIterator[PublishedEvent]:
        """Events visible to the organisation: replayed after ``after_seq``, then live. Raises
        ``domain.errors.SubscriptionEnded`` when ``token_id`` is revoked."""
        ...


class StoreSyncResult(Protocol):
    @property
    def store(self) -> Store: ...
    @property
    def products_synced(self) -> int: ...
    @property
    def orders_seen(self) -> int: ...
    @property
    def orders_created(self) -> int: ...


class StoreSync(Protocol):
    """Pull a buyer's store's products and new orders (``syncStoreOrders``)."""

    async def __call__(self, *, viewer: Viewer, store_id: int) -> StoreSyncResult: ...


class WarehouseCheck(Protocol):
    """Ping a supplier's third-party warehouse with its stored credentials and record the
    result (``testThirdPartyWarehouse``)."""

    async def __call__(
        self, *, viewer: Viewer, third_party_warehouse_id: int
    ) -> ThirdPartyWarehouse: ...


@dataclass(frozen=True)
class Services:
    """The integrations a resolver may call, as ``info.context.services``."""

    sync_store: StoreSync
    check_warehouse: WarehouseCheck


@dataclass
class Context:
    request: Any
    response: Any
    request_id: str
    hub: EventSource
    services: Services
    viewer: Viewer | None = None
    auth_problem: str | None = None
    connection_params: dict[str, Any] | None = None
    _loaders: Loaders | None = field(default=None, repr=False)

    @property
    def loaders(self) -> Loaders:
        """The DataLoaders of the current viewer, made on first use (an idle WebSocket or a
        request that loads nothing never pays for them)."""
        if self._loaders is None:
            self._loaders = Loaders(self.viewer)
        return self._loaders

    def fresh_loaders(self) -> None:
        """Forget loaded objects (each request, and each subscription event): the next use
        makes new loaders for the current viewer, so nothing goes stale."""
        self._loaders = None
