"""The event every change of an after-sales (return) order records."""

from __future__ import annotations

from domain.after_sales.models import AfterSalesOrder
from domain.distribution.models import Withdrawal
from domain.events import record_event
from domain.events.catalogue import ReturnStatusChanged


async def return_event(
    item: AfterSalesOrder, actor_user_id: int | None, *, withdrawal: Withdrawal | None = None
) -> None:
    """``item`` as it is now; ``withdrawal`` names the withdraw step (or resolution) that
    changed it, so the return stream carries each step with its reason."""
    await record_event(
        ReturnStatusChanged.of(item, actor_user_id=actor_user_id, withdrawal=withdrawal)
    )
