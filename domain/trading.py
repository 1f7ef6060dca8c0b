"""Who trades with whom: the one rule for what a supplier may do to a buyer it names by id.

A supplier and a buyer trade once a partnership between them is ACCEPTED
(``domain.distribution``) or an order of any status is between them. A supplier may top up
(and so open) only the wallets of buyers it trades with; for any other id, a buyer's or not, it
is told the buyer is not found, word for word as for an id nobody has, so it learns nothing
about other tenants (which ids are buyers, which currency they are in) and cannot leave notes
in their wallets. One statement (``domain.persistence.trading``).
"""

from __future__ import annotations

from domain.persistence.trading import partnered_or_ordered
from domain.validation import is_key


async def trades_with(*, supplier_id: int, buyer_id: int) -> bool:
    """Whether ``supplier_id`` and ``buyer_id`` trade (see above); False for an id no row can
    have."""
    if not (is_key(supplier_id) and is_key(buyer_id)):
        return False
    return await partnered_or_ordered(supplier_id=supplier_id, buyer_id=buyer_id)
