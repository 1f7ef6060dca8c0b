"""Reading payments: the caller's wallets and their entries, and freight quotes."""

from __future__ import annotations

from domain import visibility
from domain.access import Viewer, require_buyer
from domain.errors import not_found
from domain.pages import keyset_page
from domain.payments.charges import Charges, compute_charges
from domain.payments.models import Wallet, WalletEntry


async def freight_quote(
    *, viewer: Viewer, order_ids: list[int], logistics_method_id: int | None
) -> Charges:
    require_buyer(viewer)
    return await compute_charges(
        buyer_id=viewer.organisation_id,
        order_ids=order_ids,
        logistics_method_id=logistics_method_id,
    )


async def list_wallets(
    *, viewer: Viewer, first: int, after: int | None = None
) -> tuple[list[Wallet], bool]:
    """A page of the caller's side of its wallets, in id order."""
    return await keyset_page(visibility.wallets(viewer), first=first, after=after)


async def wallet_entries(
    *, viewer: Viewer, wallet_id: int, first: int, after: int | None = None
) -> tuple[list[WalletEntry], bool]:
    """A page of one of the caller's wallets' entries, newest first (an entry is visible with
    its wallet)."""
    wallet = await visibility.wallets(viewer).get_or_none(id=wallet_id)
    if wallet is None:
        raise not_found("Wallet", field="walletId")
    return await keyset_page(
        WalletEntry.filter(wallet_id=wallet.id), first=first, after=after, newest_first=True
    )
