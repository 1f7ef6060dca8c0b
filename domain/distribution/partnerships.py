"""Commands on partnerships between suppliers and distributors, their distribution warehouses,
the supplier's third-party warehouses and distribution settings, and the lookups
they share. Their reads for the API: ``domain.distribution.queries``."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from domain import limits, visibility
from domain.access import Viewer, require_buyer, require_supplier_staff
from domain.db import transaction
from domain.distribution.models import (
    DistributionSettings,
    DistributionWarehouse,
    Partnership,
    PartnershipStatus,
    ThirdPartyWarehouse,
)
from domain.errors import DomainError, ErrorCode, not_found
from domain.events import record_event
from domain.events.catalogue import (
    DistributionSettingsUpdated,
    PartnershipUpdated,
    ThirdPartyWarehouseUpdated,
)
from domain.external_addresses import check_registered_url
from domain.orders.intake import clean_address
from domain.organisations.models import Organisation, OrganisationKind, Role
from domain.validation import clean_text

DEFAULT_WAREHOUSE_NAME = "Default distribution warehouse"


async def _partnership_event(partnership: Partnership, actor_user_id: int | None) -> None:
    await record_event(PartnershipUpdated.of(partnership, actor_user_id=actor_user_id))


async def apply_for_partnership(*, viewer: Viewer, supplier_id: int, message: str) -> Partnership:
    """A distributor applies to a supplier (again, after a rejection)."""
    require_buyer(viewer, Role.ADMIN)
    message = clean_text(message, field="message", max_length=500, required=False)
    supplier = await Organisation.get_or_none(id=supplier_id, kind=OrganisationKind.SUPPLIER)
    if supplier is None:
        raise not_found("Supplier", field="supplierId")
    async with transaction():
        existing = await Partnership.get_or_none(
            supplier_id=supplier_id, distributor_id=viewer.organisation_id
        )
        if existing is not None and existing.status is not PartnershipStatus.REJECTED:
            raise DomainError(
                ErrorCode.ALREADY_EXISTS,
                f"A partnership with this supplier is already {existing.status.value}.",
                field="supplierId",
            )
        if existing is None:
            partnership = await Partnership.create(
                supplier_id=supplier_id,
                distributor_id=viewer.organisation_id,
                status=PartnershipStatus.PENDING,
                message=message,
            )
        else:
            partnership = existing
            partnership.status = PartnershipStatus.PENDING
            partnership.message = message
            partnership.decided_at = None
            await partnership.save()
        await _partnership_event(partnership, viewer.user_id)
    return partnership


async def decide_partnership(
    *, viewer: Viewer, partnership_id: int, accept: bool, note: str = ""
) -> Partnership:
    """The supplier accepts (a distribution warehouse is created for the distributor) or
    rejects a PENDING application."""
    require_supplier_staff(viewer)
    note = clean_text(note, field="note", max_length=500, required=False)
    async with transaction():
        partnership = await Partnership.get_or_none(
            id=partnership_id, supplier_id=viewer.organisation_id
        )
        if partnership is None:
            raise not_found("Partnership", field="partnershipId")
        if partnership.status is not PartnershipStatus.PENDING:
            raise DomainError(
                ErrorCode.ILLEGAL_TRANSITION,
                f"The partnership is {partnership.status.value}, not PENDING.",
                field="partnershipId",
            )
        updated = await Partnership.filter(
            id=partnership.id, status=PartnershipStatus.PENDING
        ).update(
            status=PartnershipStatus.ACCEPTED if accept else PartnershipStatus.REJECTED,
            decision_note=note,
            decided_at=datetime.now(UTC),
        )
        if updated != 1:
            raise DomainError(ErrorCode.CONFLICT, "Decided meanwhile.", field="partnershipId")
        await partnership.refresh_from_db()
        if accept and partnership.warehouse_id is None:
            warehouse = await DistributionWarehouse.create(
                partnership_id=partnership.id,
                name=DEFAULT_WAREHOUSE_NAME,
                created_by_system=True,
            )
            partnership.warehouse_id = warehouse.id
            await partnership.save(update_fields=["warehouse_id", "updated_at"])
        await _partnership_event(partnership, viewer.user_id)
    return partnership


async def partnership_of(
    viewer: Viewer, partnership_id: int, *, accepted: bool = True
) -> Partnership:
    partnership = await visibility.partnerships(viewer).get_or_none(id=partnership_id)
    if partnership is None:
        raise not_found("Partnership", field="partnershipId")
    if accepted and partnership.status is not PartnershipStatus.ACCEPTED:
        raise DomainError(
            ErrorCode.ILLEGAL_TRANSITION,
            f"The partnership is {partnership.status.value}, not ACCEPTED.",
            field="partnershipId",
        )
    return partnership


async def accepted_partnership(*, supplier_id: int, distributor_id: int) -> Partnership | None:
    return await Partnership.get_or_none(
        supplier_id=supplier_id, distributor_id=distributor_id, status=PartnershipStatus.ACCEPTED
    )


async def add_distribution_warehouse(
    *, viewer: Viewer, partnership_id: int, name: str, address: dict[str, str]
) -> DistributionWarehouse:
    """The distributor adds another distribution warehouse to a partnership."""
    require_buyer(viewer)
    name = clean_text(name, field="name", max_length=200)
    cleaned = clean_address(address, field="address")
    async with transaction():
        partnership = await partnership_of(viewer, partnership_id)
        await limits.ensure_room(
            DistributionWarehouse.filter(partnership_id=partnership.id),
            limits.MAX_DISTRIBUTION_WAREHOUSES_PER_PARTNERSHIP,
            message=f"At most {limits.MAX_DISTRIBUTION_WAREHOUSES_PER_PARTNERSHIP} distribution "
            "warehouses per partnership.",
            field="partnershipId",
            lock=Partnership.filter(id=partnership.id),
        )
        warehouse = await DistributionWarehouse.create(
            partnership_id=partnership.id, name=name, address=cleaned
        )
        await _partnership_event(partnership, viewer.user_id)
    return warehouse


async def select_distribution_warehouse(
    *,
    viewer: Viewer,
    partnership_id: int,
    warehouse_id: int,
    third_party_warehouse_id: int | None,
) -> Partnership:
    """The supplier chooses which distribution warehouse fulfils the distributor, and whether
    one of its authorised third-party warehouses runs it (``third_party_warehouse_id``)."""
    require_supplier_staff(viewer)
    async with transaction():
        partnership = await partnership_of(viewer, partnership_id)
        warehouse = await DistributionWarehouse.get_or_none(
            id=warehouse_id, partnership_id=partnership.id
        )
        if warehouse is None:
            raise not_found("Distribution warehouse of this partnership", field="warehouseId")
        if third_party_warehouse_id is not None:
            await third_party_warehouse_of(
                viewer, third_party_warehouse_id, field="thirdPartyWarehouseId"
            )
        warehouse.third_party_warehouse_id = third_party_warehouse_id
        await warehouse.save(update_fields=["third_party_warehouse_id"])
        partnership.warehouse_id = warehouse.id
        await partnership.save(update_fields=["warehouse_id", "updated_at"])
        await _partnership_event(partnership, viewer.user_id)
    return partnership


async def fulfilling_connection(partnership: Partnership) -> ThirdPartyWarehouse | None:
    """The active third-party warehouse that fulfils this partnership's orders, if any."""
    if partnership.warehouse_id is None:
        return None
    warehouse = await DistributionWarehouse.get_or_none(id=partnership.warehouse_id)
    if warehouse is None or warehouse.third_party_warehouse_id is None:
        return None
    return await ThirdPartyWarehouse.get_or_none(
        id=warehouse.third_party_warehouse_id, is_active=True
    )


# -- third-party warehouses ------------------------------------------------------------------------


@dataclass(frozen=True)
class AuthorisedWarehouse:
    third_party_warehouse: ThirdPartyWarehouse
    callback_secret: str


async def authorise_warehouse(
    *, viewer: Viewer, provider: str, name: str, api_url: str, api_key: str
) -> AuthorisedWarehouse:
    """The supplier authorises a third-party warehouse; the callback secret is shown once."""
    require_supplier_staff(viewer)
    viewer.require_role(Role.ADMIN)
    provider = clean_text(provider, field="provider", max_length=100)
    name = clean_text(name, field="name", max_length=200)
    api_url = clean_text(api_url, field="apiUrl", max_length=500)
    await check_registered_url(api_url, field="apiUrl")
    api_key = clean_text(api_key, field="apiKey", max_length=500)
    secret = secrets.token_urlsafe(32)
    async with transaction():
        await limits.ensure_room(
            ThirdPartyWarehouse.filter(supplier_id=viewer.organisation_id),
            limits.MAX_THIRD_PARTY_WAREHOUSES_PER_SUPPLIER,
            message=f"At most {limits.MAX_THIRD_PARTY_WAREHOUSES_PER_SUPPLIER} third-party "
            "warehouses per supplier (revoked ones included).",
            lock=Organisation.filter(id=viewer.organisation_id),
        )
        third_party_warehouse = await ThirdPartyWarehouse.create(
            supplier_id=viewer.organisation_id,
            provider=provider,
            name=name,
            api_url=api_url.rstrip("/"),
            api_key=api_key,
            callback_secret=secret,
        )
        await _connection_event(third_party_warehouse, "AUTHORISED", actor_user_id=viewer.user_id)
    return AuthorisedWarehouse(third_party_warehouse=third_party_warehouse, callback_secret=secret)


async def _connection_event(
    third_party_warehouse: ThirdPartyWarehouse, change: str, *, actor_user_id: int | None
) -> None:
    await record_event(
        ThirdPartyWarehouseUpdated.of(
            third_party_warehouse, change=change, actor_user_id=actor_user_id
        )
    )


async def third_party_warehouse_of(
    viewer: Viewer, third_party_warehouse_id: int, *, field: str = "thirdPartyWarehouseId"
) -> ThirdPartyWarehouse:
    require_supplier_staff(viewer)
    third_party_warehouse = await ThirdPartyWarehouse.get_or_none(
        id=third_party_warehouse_id, supplier_id=viewer.organisation_id, is_active=True
    )
    if third_party_warehouse is None:
        raise not_found("Third-party warehouse", field=field)
    return third_party_warehouse


async def record_connection_test(
    third_party_warehouse: ThirdPartyWarehouse, *, ok: bool, message: str, actor_user_id: int | None
) -> ThirdPartyWarehouse:
    third_party_warehouse.last_test_ok = ok
    third_party_warehouse.last_test_message = message[:500]
    third_party_warehouse.last_tested_at = datetime.now(UTC)
    async with transaction():
        await third_party_warehouse.save(
            update_fields=["last_test_ok", "last_test_message", "last_tested_at"]
        )
        await _connection_event(third_party_warehouse, "TESTED", actor_user_id=actor_user_id)
    return third_party_warehouse


async def revoke_third_party_warehouse(
    *, viewer: Viewer, third_party_warehouse_id: int
) -> ThirdPartyWarehouse:
    viewer.require_role(Role.ADMIN)
    async with transaction():
        third_party_warehouse = await third_party_warehouse_of(
            viewer, third_party_warehouse_id, field="id"
        )
        third_party_warehouse.is_active = False
        await third_party_warehouse.save(update_fields=["is_active"])
        await _connection_event(third_party_warehouse, "REVOKED", actor_user_id=viewer.user_id)
    return third_party_warehouse


# -- settings ----------------------------------------------------------------------------------


async def distribution_settings(supplier_id: int) -> DistributionSettings:
    settings, _ = await DistributionSettings.get_or_create(supplier_id=supplier_id)
    return settings


async def update_distribution_settings(
    *, viewer: Viewer, charge_on_push: bool | None, auto_push_returns: bool | None
) -> DistributionSettings:
    require_supplier_staff(viewer)
    viewer.require_role(Role.ADMIN)
    async with transaction():
        settings = await distribution_settings(viewer.organisation_id)
        if charge_on_push is not None:
            settings.charge_on_push = charge_on_push
        if auto_push_returns is not None:
            settings.auto_push_returns = auto_push_returns
        await settings.save()
        await record_event(DistributionSettingsUpdated.of(settings, actor_user_id=viewer.user_id))
    return settings
