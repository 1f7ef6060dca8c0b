"""The event every change of an after-sales (return) order records."""

from __future__ import annotations

from domain.after_sales.models import AfterSalesOrder
from domain.events import record_event
from domain.events.catalogue import ReturnStatusChanged


async def return_event(item: AfterSalesOrder, actor_user_id: int | None) -> None:
    await record_event(ReturnStatusChanged.of(item, actor_user_id=actor_user_id))
