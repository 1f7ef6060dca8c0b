"""Store commands: connecting a buyer's store, and recording what a sync brought (its products
and variants, when it ended)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from domain import limits
from domain.access import Viewer, require_buyer
from domain.db import transaction
from domain.errors import DomainError, ErrorCode
from domain.events import record_event
from domain.events.catalogue import StoreUpdated
from domain.external_addresses import check_registered_url
from domain.organisations.models import Organisation
from domain.stores.data import StoreProductData
from domain.stores.models import Store, StorePlatform, StoreProduct, StoreVariant
from domain.validation import clean_text


async def connect_store(
    *,
    viewer: Viewer,
    name: str,
    platform: StorePlatform,
    api_url: str,
    access_token: str,
    webhook_secret: str | None = None,
) -> tuple[Store, str]:
    """Connect a store; returns it and its webhook secret (shown to the buyer once)."""
    require_buyer(viewer)
    name = clean_text(name, field="name", max_length=200)
    api_url = clean_text(api_url, field="apiUrl", max_length=500)
    await check_registered_url(api_url, field="apiUrl")
    access_token = clean_text(access_token, field="accessToken", max_length=500)
    secret = (
        clean_text(webhook_secret, field="webhookSecret", max_length=200)
        if webhook_secret
        else secrets.token_urlsafe(32)
    )
    async with transaction():
        await limits.ensure_room(
            Store.filter(buyer_id=viewer.organisation_id),
            limits.MAX_STORES_PER_BUYER,
            message=f"At most {limits.MAX_STORES_PER_BUYER} stores per buyer.",
            lock=Organisation.filter(id=viewer.organisation_id),
        )
        store = await Store.create(
            buyer_id=viewer.organisation_id,
            name=name,
            platform=platform,
            api_url=api_url.rstrip("/"),
            access_token=access_token,
            webhook_secret=secret,
        )
        await _store_event(store, "CONNECTED", actor_user_id=viewer.user_id)
    return store, secret


async def _store_event(store: Store, change: str, *, actor_user_id: int | None) -> None:
    """A store, its products or its sync time changed (the suppliers of its orders see the
    store on them: the response cache drops what read stores, ``domain.shared_data``)."""
    await record_event(StoreUpdated.of(store, change=change, actor_user_id=actor_user_id))


async def record_sync(store: Store, *, actor_user_id: int | None) -> None:
    """A sync of ``store`` ended (well or not): its ``last_synced_at`` and where it got to."""
    store.last_synced_at = datetime.now(UTC)
    async with transaction():
        await store.save(update_fields=["last_order_external_id", "last_synced_at"])
        await _store_event(store, "SYNCED", actor_user_id=actor_user_id)


async def upsert_store_products(
    *, store: Store, products: list[StoreProductData], actor_user_id: int | None = None
) -> int:
    """Create or update the store's products and variants; returns how many variants. A store
    keeps at most ``limits.MAX_STORE_PRODUCTS_PER_STORE`` products: a sync that would pass it
    is refused (``TOO_MANY``) and writes none."""
    count = 0
    async with transaction():
        await Store.filter(id=store.id).select_for_update().first()
        known = set(
            await StoreProduct.filter(store_id=store.id).values_list("external_id", flat=True)
        )
        added = {data.external_id for data in products} - known
        if len(known) + len(added) > limits.MAX_STORE_PRODUCTS_PER_STORE:
            raise DomainError(
                ErrorCode.TOO_MANY,
                f"The store has {len(known) + len(added)} products; at most "
                f"{limits.MAX_STORE_PRODUCTS_PER_STORE} are kept per store.",
                field="storeId",
            )
        for data in products:
            product, _ = await StoreProduct.update_or_create(
                store_id=store.id,
                external_id=data.external_id,
                defaults={"title": data.title[:300]},
            )
            for v in data.variants:
                await StoreVariant.update_or_create(
                    store_id=store.id,
                    external_id=v.external_id,
                    defaults={
                        "product_id": product.id,
                        "title": v.title[:300],
                        "sku_code": (v.sku or None) and v.sku[:100],
                        "attributes": {k.lower(): str(val) for k, val in v.attributes.items()},
                    },
                )
                count += 1
        if products:
            await _store_event(store, "PRODUCTS_SYNCED", actor_user_id=actor_user_id)
    return count
